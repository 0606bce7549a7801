"""Classifiers as the reference runs them: `classifier predict` (../shared/reference/classify), `classifier valid`
and its crops, word trees (tree=, against the reference's output in tests/data/classify_tree), `map` on a
classifier, Darknet's spellings, and `partial` of a classifier seeding a detector.

tiny.txt was printed by the reference's build without OpenCV, which decodes JPEG with stb_image: with those pixels
the names and their order are identical and every probability is within one unit of the last printed digit (1e-6).
That unit is float order: the reference's [avgpool] sums each channel's 14x14 values one after the other and its
[softmax] takes exp in double and sums in float one after the other; darkcfg's layers use PyTorch's reductions.
Applying the reference's order to darkcfg's own layer-19 output gives every printed digit of tiny.txt
(`test_reference_digits_with_the_reference_float_order`). `darkcfg classify` as shipped decodes with OpenCV
(libjpeg-turbo): the same names in the same order, probabilities within 5e-4 (measured 2.0e-4).
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from oracle import CFG_DIR, IMAGES, REF, REF_IMAGES, REPO, needs_shared, randomize, stb_decode

import darkcfg
from darkcfg.cli import main
from darkcfg.data.images import load_image
from darkcfg.eval.classifier import path_label
from darkcfg.infer.classify import (
    Classifier,
    Prediction,
    classifier_input,
    classify,
    crop_image,
    hierarchy_predictions,
    resize_min,
    top_k,
    tree_leaves,
)
from darkcfg.infer.preprocess import resize_image
from darkcfg.model.network import Darknet
from darkcfg.model.weights import WeightsHeader, load_weights, save_weights

CLS = REF / "classify"
F32 = np.float32


def _reference_blocks() -> dict[str, list[tuple[str, float, str]]]:
    """tiny.txt: image -> [(name, probability, the printed line)]."""
    blocks: dict[str, list] = {}
    for line in (CLS / "tiny.txt").read_text().splitlines():
        if line.startswith("== "):
            cur = blocks.setdefault(Path(line[3:]).stem, [])
            continue
        name, value = line.rsplit(": ", 1)
        cur.append((name, float(value), line))
    return blocks


@pytest.fixture(scope="module")
def tiny():
    return darkcfg.load(CLS / "tiny.cfg", CLS / "tiny.weights")


def _names():
    return (CLS / "tiny.names").read_text().splitlines()


# -- classifier predict against the reference -----------------------------------------------------------------------
@needs_shared
def test_predict_matches_reference_with_the_reference_decoder(tiny):
    ref = _reference_blocks()
    images = [stb_decode(IMAGES / f"{n}.jpg") for n in REF_IMAGES]
    got = classify(tiny, images, top=5, names=_names(), bgr=False, batch=3)
    worst = 0.0
    for n, preds in zip(REF_IMAGES, got):
        assert [p.name for p in preds] == [r[0] for r in ref[n]], n
        printed = [float(f"{p.probability:f}") for p in preds]
        worst = max(worst, *(abs(a - r[1]) for a, r in zip(printed, ref[n])))
    # measured: 27 of the 30 lines identical, 3 one unit of the last digit off: float order (module docstring)
    assert worst <= 1.0000001e-6, worst


def _c_avgpool_softmax(conv: np.ndarray) -> np.ndarray:
    """avgpool_layer.c + softmax_layer.c (blas.c:softmax) on one (C, H, W) float32 input: each channel's sum in
    order, / (H*W); then exp(x - max) in double stored as float, summed in order in float, each divided."""
    planes = conv.reshape(conv.shape[0], -1).T.astype(F32)  # (H*W, C)
    avg = np.add.accumulate(planes, axis=0, dtype=F32)[-1] / F32(planes.shape[0])  # in order, float32
    e = np.exp((avg - avg.max()).astype(np.float64)).astype(F32)
    return e / np.add.accumulate(e, dtype=F32)[-1]


@needs_shared
def test_reference_digits_with_the_reference_float_order(tiny):
    """The remaining 1e-6 is the float order of the network's last two layers: in the reference's order, from
    darkcfg's own output of layer 19 (the 1000-filter convolution), every printed digit of tiny.txt."""
    ref = _reference_blocks()
    names = _names()
    for n in REF_IMAGES:
        rgb = stb_decode(IMAGES / f"{n}.jpg")
        x = classifier_input(rgb.transpose(2, 0, 1).astype(F32) / F32(255), 224, 224)
        with torch.no_grad():
            conv = tiny.forward_all(torch.from_numpy(x)[None])[19][0].numpy()
        p = _c_avgpool_softmax(conv)
        assert [f"{names[i]}: {p[i]:f}" for i in top_k(p, 5)] == [r[2] for r in ref[n]], n


def _parse_cli(text: str) -> list[tuple[str, list[tuple[str, float]]]]:
    blocks = []
    for line in text.splitlines():
        m = re.fullmatch(r"(.+): Predicted in [\d.]+ milli-seconds\.", line)
        if m:
            blocks.append((m.group(1), []))
        else:
            name, value = line.rsplit(": ", 1)
            blocks[-1][1].append((name, float(value)))
    return blocks


@needs_shared
def test_cli_matches_reference(tmp_path):
    ref = _reference_blocks()
    paths = [str(IMAGES / f"{n}.jpg") for n in REF_IMAGES]
    res = CliRunner().invoke(main, ["classify", str(CLS / "tiny.cfg"), str(CLS / "tiny.weights"), *paths,
                                    "--data", str(CLS / "tiny.data"), "-b", "4", "--json", str(tmp_path / "o.json")])
    assert res.exit_code == 0, res.output
    blocks = _parse_cli(res.stdout)
    assert [b[0] for b in blocks] == paths
    for (_, lines), n in zip(blocks, REF_IMAGES):
        assert [x[0] for x in lines] == [r[0] for r in ref[n]], n  # top=5 from tiny.data
        assert max(abs(a[1] - r[1]) for a, r in zip(lines, ref[n])) <= 5e-4  # the JPEG decoder (docstring)
    entries = json.loads((tmp_path / "o.json").read_text())
    assert [e["filename"] for e in entries] == paths
    for e, (_, lines) in zip(entries, blocks):
        assert [t["name"] for t in e["top"]] == [x[0] for x in lines]
        assert [int(t["name"][1:]) for t in e["top"]] == [t["class_id"] for t in e["top"]]
        assert all(abs(t["probability"] - x[1]) <= 5e-7 for t, x in zip(e["top"], lines))


@needs_shared
def test_darknet_spelling_classifier_predict(tmp_path, monkeypatch):
    """`classifier predict DATA CFG WEIGHTS IMAGE -t 3`, run from the reference's folder as the reference was."""
    monkeypatch.chdir(CLS)
    res = CliRunner().invoke(main, ["classifier", "predict", "tiny.data", "tiny.cfg", "tiny.weights",
                                    str(IMAGES / "dog.jpg"), "-t", "3"])
    assert res.exit_code == 0, res.output
    (path, lines), = _parse_cli(res.stdout)
    assert path == str(IMAGES / "dog.jpg")
    assert [x[0] for x in lines] == [r[0] for r in _reference_blocks()["dog"][:3]]


# -- pre-processing: a transcription of image.c ----------------------------------------------------------------------
def _c_resize_image(im, w, h):
    """image.c:resize_image, loop for loop, float32 scalar arithmetic."""
    c, ih, iw = im.shape
    if (iw, ih) == (w, h):
        return im.copy()
    part = np.zeros((c, ih, w), F32)
    out = np.zeros((c, h, w), F32)
    w_scale = F32(iw - 1) / F32(w - 1)
    h_scale = F32(ih - 1) / F32(h - 1)
    for k in range(c):
        for r in range(ih):
            for col in range(w):
                if col == w - 1 or iw == 1:
                    val = im[k, r, iw - 1]
                else:
                    sx = F32(col) * w_scale
                    ix = int(sx)
                    dx = sx - F32(ix)
                    val = (F32(1) - dx) * im[k, r, ix] + dx * im[k, r, ix + 1]
                part[k, r, col] = val
    for k in range(c):
        for r in range(h):
            sy = F32(r) * h_scale
            iy = int(sy)
            dy = sy - F32(iy)
            for col in range(w):
                out[k, r, col] = (F32(1) - dy) * part[k, iy, col]
            if r == h - 1 or ih == 1:
                continue
            for col in range(w):
                out[k, r, col] += dy * part[k, iy + 1, col]
    return out


def _c_predict_input(im, net_w, net_h):
    """predict_classifier: resize_min(im, net.w), crop_image(resized, (w - net.w)/2, (h - net.h)/2, net.w, net.h)."""
    c, h, w = im.shape
    if w < h:
        nw, nh = net_w, (h * net_w) // w  # ints: (h * min) / w
    else:
        nw, nh = (w * net_w) // h, net_w
    resized = im if (nw, nh) == (w, h) else _c_resize_image(im, nw, nh)
    dx, dy = int((nw - net_w) / 2), int((nh - net_h) / 2)  # C division truncates toward zero
    out = np.zeros((c, net_h, net_w), F32)
    for k in range(c):
        for j in range(net_h):
            for i in range(net_w):
                r = min(max(j + dy, 0), nh - 1)  # constrain_int
                col = min(max(i + dx, 0), nw - 1)
                out[k, j, i] = resized[k, r, col]
    return out


@pytest.mark.parametrize("w,h,net_w,net_h", [(7, 5, 4, 4), (5, 11, 3, 6), (9, 9, 9, 9), (13, 6, 5, 8), (6, 13, 7, 3),
                                             (17, 10, 6, 9), (10, 17, 6, 13)])
def test_predict_input_matches_the_c_arithmetic(w, h, net_w, net_h):
    """Odd sizes, a crop larger than the resized side (negative, odd offsets: C truncates toward zero where Python
    floors), an image already at size (resize_min returns it), and net.w != net.h (resize_min uses net.w only)."""
    im = np.random.default_rng(w * 100 + h).random((3, h, w), dtype=np.float32)
    assert np.array_equal(classifier_input(im, net_w, net_h), _c_predict_input(im, net_w, net_h))


def test_resize_min_and_crop_details():
    im = np.random.default_rng(0).random((3, 8, 8), dtype=np.float32)
    assert resize_min(im, 8) is im  # unchanged: the image itself, as the reference (its multi-crop relies on it)
    assert resize_min(im, 4).shape == (3, 4, 4)
    assert resize_min(np.zeros((3, 7, 5), F32), 3).shape == (3, 4, 3)  # 7 * 3 // 5 = 4
    assert np.array_equal(crop_image(im, -2, 7, 3, 2)[:, :, 0], im[:, [7, 7], 0])  # clamped to the edge
    assert np.array_equal(resize_image(im, 5, 3), _c_resize_image(im, 5, 3))


# -- top_k and the tree -----------------------------------------------------------------------------------------------
def _c_top_k(a, k):
    """utils.c:top_k, literally."""
    index = [-1] * k
    for i in range(len(a)):
        curr = i
        for j in range(k):
            if index[j] < 0 or a[curr] > a[index[j]]:
                curr, index[j] = index[j], curr
    return index


@pytest.mark.parametrize("values", [[0.1, 0.3, 0.3, 0.2, 0.3], [0.0, -0.0, 0.0, -1.0], [1, 1, 1, 1, 1, 1],
                                    [0.5, float("nan"), 0.7, 0.2, float("nan"), 0.9], [float("nan"), 0.1, 0.2],
                                    [float("inf"), 1.0, float("-inf"), 1.0]])
def test_top_k_ties_and_order_as_the_reference(values):
    a = np.array(values, dtype=F32)
    for k in range(1, len(a) + 1):
        assert top_k(a, k) == _c_top_k(a, k), (values, k)
    rng = np.random.default_rng(1)
    for _ in range(20):
        b = rng.integers(0, 4, 30).astype(F32) / F32(4)  # many ties
        assert top_k(b, 7) == _c_top_k(b, 7)


# A made-up tree in the 9k.tree format ("name parent"): two roots, groups of two and three.
TREE = ["animal -1", "plant -1", "dog 0", "cat 0", "rose 1", "oak 1", "fern 1"]


def _read_tree(lines):
    """tree.c:read_tree: parents, groups (runs of the same parent) and leaves."""
    parent = [int(s.split()[1]) for s in lines]
    groups, last = [], None
    for i, p in enumerate(parent):
        if p != last:
            groups.append([i, 0])
            last = p
        groups[-1][1] += 1
    leaf = [all(q != i for q in parent) for i in range(len(parent))]
    return parent, groups, leaf


def _ancestors_product(p, parent, c):
    """tree.c:get_hierarchy_probability: a node's value times all its ancestors'."""
    v = 1.0
    while c >= 0:
        v *= float(p[c])
        c = parent[c]
    return v


def test_hierarchy_predictions_as_tree_c():
    parent, _, leaf = _read_tree(TREE)
    cond = np.array([0.6, 0.4, 0.7, 0.3, 0.5, 0.25, 0.25], F32)
    got = hierarchy_predictions(cond, parent, only_leaves=False)
    want = [_ancestors_product(cond, parent, c) for c in range(len(TREE))]
    assert np.allclose(got, want, rtol=1e-6, atol=0)
    leaves = hierarchy_predictions(cond[None], parent, only_leaves=True)[0]
    assert np.array_equal(leaves == 0, ~np.array(leaf)) and leaves[2] == got[2]
    assert cond[2] == F32(0.7)  # the input is not changed


def _tree_model(tmp_path):
    """A small network ending in [connected] 7 -> [softmax] with tree= a file of TREE (read beside the cfg)."""
    (tmp_path / "t.tree").write_text("".join(t + "\n" for t in TREE))
    cfg = tmp_path / "tree.cfg"
    cfg.write_text("[net]\nwidth=12\nheight=10\nchannels=3\n\n[avgpool]\n\n[connected]\noutput=7\nactivation=linear"
                   "\n\n[softmax]\ntree=t.tree\n")
    model = Darknet.from_file(cfg)
    randomize(model, 4)
    with torch.no_grad():
        model.layers[1].weight.mul_(20)
    model.eval()
    parent, groups, _ = _read_tree(TREE)
    return model, parent, groups


def test_tree_classifier_prints_what_the_reference_prints(tmp_path):
    model, parent, groups = _tree_model(tmp_path)
    names = [s.split()[0] for s in TREE]
    rng = np.random.default_rng(2)
    images = [rng.random((3, 15, 20), dtype=np.float32) for _ in range(3)]
    clf = Classifier(model, names, top=4)
    for im, preds in zip(images, clf.classify_arrays(images)):
        with torch.no_grad():
            x = torch.from_numpy(classifier_input(im, 12, 10))[None]
            logits = model.forward_all(x)[1].double().reshape(-1).numpy()  # the [connected] output (7,)
        e = [np.exp(logits[o:o + n] - logits[o:o + n].max()) for o, n in groups]
        cond = np.concatenate([g / g.sum() for g in e])
        hier = np.array([_ancestors_product(cond, parent, c) for c in range(7)])
        order = sorted(range(7), key=lambda c: -hier[c])[:4]
        assert [p.class_id for p in preds] == order
        assert np.allclose([p.probability for p in preds], hier[order], atol=1e-6)
        lines = clf.lines(preds)
        want = [f"{c}, {names[c]}: {hier[c]:f}, parent: {names[parent[c]] if parent[c] >= 0 else 'Root'} "
                for c in order]
        assert [ln[: ln.index(": ")] for ln in lines] == [w[: w.index(": ")] for w in want]
        assert [ln.split(", parent: ")[1] for ln in lines] == [w.split(", parent: ")[1] for w in want]


# -- classifier valid -------------------------------------------------------------------------------------------------
SMALL_CFG = """[net]
width=40
height=32
channels=3

[convolutional]
filters=8
size=3
stride=2
pad=1
activation=linear

[avgpool]

[connected]
output=4
activation=linear

[softmax]
"""


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """The script's classification set (4 classes, 12 valid images) and a small random classifier (40x32) whose
    top classes differ from image to image (measured: top 1 4/12, top 2 8/12)."""
    out = tmp_path_factory.mktemp("shapeset") / "set"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_shapes_dataset.py"), str(out), "--classify",
                    "--train", "2", "--valid", "12", "--size", "48", "--classes", "4", "--seed", "1"], check=True,
                   capture_output=True)
    (out / "small.cfg").write_text(SMALL_CFG)
    model = Darknet.from_file(out / "small.cfg")
    randomize(model, 3)
    with torch.no_grad():
        model.layers[2].weight.mul_(30)
    save_weights(model, out / "small.weights")
    model.eval()
    return out, model


def test_shapes_classification_set_layout(shapes):
    out, _ = shapes
    data = dict(line.split(" = ") for line in (out / "shapes.data").read_text().splitlines())
    assert data["classes"] == "4" and data["top"] == "2" and data["labels"] == data["names"]
    names = Path(data["names"]).read_text().split()
    assert names == ["circle", "square", "triangle", "cross"]
    valid = Path(data["valid"]).read_text().split()
    assert len(valid) == 12 and all(Path(p).is_file() for p in valid)
    assert all(path_label(p, names) == names.index(Path(p).name.split("_")[0]) for p in valid)
    assert len(Path(data["train"]).read_text().split()) == 2


def _expected_valid_lines(model, valid, names, k):
    """Running top-1 / top-k means in float32, counted here: the class from the file name, the predictions from
    the Python API."""
    acc = acc_k = F32(0)
    lines = []
    for i, (path, preds) in enumerate(zip(valid, classify(model, valid, top=k))):
        truth = names.index(Path(path).name.split("_")[0])
        ids = [p.class_id for p in preds]
        acc += F32(ids[0] == truth)
        acc_k += F32(truth in ids)
        lines.append(f"{i}: top 1: {float(acc / F32(i + 1)):f}, top {k}: {float(acc_k / F32(i + 1)):f}")
    return lines


def test_classifier_valid_counts(shapes):
    out, model = shapes
    valid = (out / "valid.txt").read_text().split()
    want = _expected_valid_lines(model, valid, ["circle", "square", "triangle", "cross"], 2)
    assert want[-1] == "11: top 1: 0.333333, top 2: 0.666667"  # neither 0 nor 1: the count is exercised
    res = CliRunner().invoke(main, ["classifier-valid", str(out / "shapes.data"), str(out / "small.cfg"),
                                    str(out / "small.weights"), "-b", "5"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == want
    # `map` on a classifier cfg, and Darknet's spelling, print the same
    for args in (["map", str(out / "shapes.data"), str(out / "small.cfg"), str(out / "small.weights")],
                 ["classifier", "valid", str(out / "shapes.data"), str(out / "small.cfg"), str(out / "small.weights")]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
        assert res.stdout.splitlines() == want, args


def test_classifier_valid10_as_the_reference(shapes):
    """valid10: the image resized to (w+32, h+32), crops at the reference's offsets (not centred; clamped), the
    same five mirrored, outputs summed; the first three images."""
    out, model = shapes
    valid = (out / "valid.txt").read_text().split()[:3]
    lst = out / "three.txt"
    lst.write_text("".join(p + "\n" for p in valid))
    data = out / "three.data"
    data.write_text(f"classes=4\nvalid={lst}\nlabels={out / 'shapes.names'}\ntop=2\n")
    res = CliRunner().invoke(main, ["classifier", "valid10", str(data), str(out / "small.cfg"),
                                    str(out / "small.weights")])
    assert res.exit_code == 0, res.output
    names = ["circle", "square", "triangle", "cross"]
    acc = acc_k = F32(0)
    want = []
    for i, path in enumerate(valid):
        im = resize_image(load_image(path), 72, 64)
        crops = []
        for mirrored in (im, im[:, :, ::-1]):
            for dx, dy in ((-32, -32), (32, -32), (0, 0), (-32, 32), (32, 32)):
                rows = np.clip(np.arange(32) + dy, 0, 63)
                cols = np.clip(np.arange(40) + dx, 0, 71)
                crops.append(np.ascontiguousarray(mirrored[:, rows][:, :, cols]))
        with torch.no_grad():
            outs = model(torch.from_numpy(np.stack(crops)))[0].reshape(10, 4).numpy()
        pred = np.zeros(4, F32)
        for o in outs:
            pred = pred + o
        ids = _c_top_k(pred, 2)
        truth = names.index(Path(path).name.split("_")[0])
        acc += F32(ids[0] == truth)
        acc_k += F32(truth in ids)
        want.append(f"{i}: top 1: {float(acc / F32(i + 1)):f}, top 2: {float(acc_k / F32(i + 1)):f}")
    assert res.stdout.splitlines() == want
    for crops in ("full", "multi"):
        res = CliRunner().invoke(main, ["classifier-valid", str(data), str(out / "small.cfg"),
                                        str(out / "small.weights"), "--crops", crops])
        assert res.exit_code == 0, res.output
        assert [ln.split(":")[0] for ln in res.stdout.splitlines()] == ["0", "1", "2"]


def test_label_from_path_is_the_first_name_in_it():
    """data.c / classifier.c: strstr over the labels in file order; the first one found wins, -1 if none."""
    names = ["cat", "dog", "hotdog"]
    assert path_label("/x/dog/cat_1.jpg", names) == 0  # both occur: the earlier label, not the file name's
    assert path_label("/x/hotdog_3.jpg", names) == 1  # "dog" is in "hotdog" and comes first
    assert path_label("/x/bird_3.jpg", names) == -1


def test_tree_valid_counts_leaves_only(tmp_path):
    """valid with a tree: hierarchy_predictions(only_leaves=1), so an inner node (animal, plant) is never a top
    class."""
    from darkcfg.eval.classifier import validate_classifier

    model, parent, _ = _tree_model(tmp_path)
    names = [s.split()[0] for s in TREE]
    paths = []
    for i, n in enumerate(["dog", "oak", "cat"]):
        p = tmp_path / f"{n}_{i}.png"
        cv2.imwrite(str(p), np.random.default_rng(i).integers(0, 256, (20, 30, 3), dtype=np.uint8))
        paths.append(str(p))
    clf = Classifier(model, names, 1, 2)
    steps = list(validate_classifier(clf, paths, names, 7))
    assert all(set(s.top[:5]) <= {2, 3, 4, 5, 6} for s in steps)  # leaves first, the zeroed inner nodes last
    assert [s.label for s in steps] == [2, 5, 3]
    assert steps[-1].line().startswith("2: top 1: ") and ", top 7: 1.000000" in steps[-1].line()


TREE_DIR = Path(__file__).parent / "data" / "classify_tree"


def _c_tree_blocks():
    """c_predict.txt (the reference's `classifier predict` on each image, README.md there): image -> its lines."""
    blocks, cur = {}, None
    for line in (TREE_DIR / "c_predict.txt").read_text().splitlines():
        m = re.fullmatch(r"(\S+): Predicted in [\d.]+ milli-seconds\.", line)
        if m:
            cur = blocks.setdefault(m.group(1), [])
        elif cur is not None and ", parent: " in line:
            cur.append(line)
    return blocks


def test_tree_predict_prints_what_the_reference_printed(monkeypatch):
    """`classify` of a [softmax] tree= cfg (one softmax per group of the tree, hierarchy_predictions, top_k, the
    `index, name: p, parent: name ` lines) against the reference's output for six images: every character. The
    logits are exact in any order (README.md there), so this checks the tree's arithmetic and printing."""
    monkeypatch.chdir(TREE_DIR)  # tree=tree.tree and the .data's paths are relative, as for the reference
    want = _c_tree_blocks()
    assert len(want) == 6 and all(len(v) == 4 for v in want.values())
    res = CliRunner().invoke(main, ["classify", "tree.cfg", "tree.weights", *want, "--data", "tree.data"])
    assert res.exit_code == 0, res.output
    got = {}
    for line in res.stdout.splitlines():
        m = re.fullmatch(r"(\S+): Predicted in [\d.]+ milli-seconds\.", line)
        if m:
            cur = got.setdefault(m.group(1), [])
        else:
            cur.append(line)
    assert got == want


def test_tree_valid_prints_what_the_reference_printed(monkeypatch):
    """`classifier valid` with the tree (only leaves count: an inner node's image, animal_4, is never right)."""
    monkeypatch.chdir(TREE_DIR)
    want = [ln for ln in (TREE_DIR / "c_valid.txt").read_text().splitlines() if ": top 1: " in ln]
    res = CliRunner().invoke(main, ["classifier", "valid", "tree.data", "tree.cfg", "tree.weights"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == want and len(want) == 6


VALID_DIR = Path(__file__).parent / "data" / "classify_valid"


def test_reference_valid_of_darkcfg_trained_weights(monkeypatch):
    """The shapes classifier as `darkcfg train` saved it (1000 iterations on the generated set, README.md there):
    the reference's `classifier valid` of those weights printed, for 30 PNG images of the valid list (one of them
    classified wrong), the lines darkcfg's classifier-valid prints, every one; and its `classifier predict` the same
    top-2 names for five of them, probabilities within a unit of the printed digit (float order)."""
    monkeypatch.chdir(VALID_DIR)
    want = (VALID_DIR / "c_valid.txt").read_text().splitlines()
    assert len(want) == 30 and want[-1] == "29: top 1: 0.966667, top 2: 1.000000"
    res = CliRunner().invoke(main, ["classifier-valid", "shapes.data", "shapes-classifier.cfg",
                                    "shapes-classifier.weights"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == want
    ref = [(b[0], b[1]) for b in _parse_cli("\n".join(
        ln for ln in (VALID_DIR / "c_predict.txt").read_text().splitlines()
        if "Predicted in" in ln or re.fullmatch(r"\w+: \d\.\d{6}", ln)))]
    res = CliRunner().invoke(main, ["classify", "shapes-classifier.cfg", "shapes-classifier.weights",
                                    *[r[0] for r in ref], "--data", "shapes.data"])
    assert res.exit_code == 0, res.output
    got = _parse_cli(res.stdout)
    assert [g[0] for g in got] == [r[0] for r in ref] and len(ref) == 5
    for (_, lines), (_, ref_lines) in zip(got, ref):
        assert [x[0] for x in lines] == [x[0] for x in ref_lines]
        assert max(abs(a[1] - b[1]) for a, b in zip(lines, ref_lines)) <= 1.0000001e-6


def test_word_tree_read_as_tree_c(tmp_path):
    """read_tree: `%s %d` (a parent written `2x` is 2, none is -1), a new group wherever the parent changes (so a
    file whose first node has a parent starts with an empty group), leaves = nodes nobody names as parent."""
    from darkcfg.model.wordtree import WordTree

    t = WordTree.from_lines(["a -1", "b", "c 0", "d 0x", "", "e 1", "f 2"])
    assert t.parent == [-1, -1, 0, 0, 1, 2] and t.name == ["a", "b", "c", "d", "e", "f"]
    assert t.groups == [(0, 2), (2, 2), (4, 1), (5, 1)]
    assert tree_leaves(t.parent).tolist() == [False, False, False, True, True, True]
    assert t.child == [1, 2, 3, -1, -1, -1]
    assert WordTree.from_lines(["x 5", "y 5"]).groups == [(0, 0), (0, 2)]


@pytest.mark.parametrize("tree,expected", [("a -1\nb -1\n", "tree=t.tree has 2 nodes, expected one per input (3)"),
                                           ("a 1\nb -1\nc 0\n", "tree=t.tree: line 1 (a): parent 1 is not an earlier")])
def test_tree_file_refused_in_one_line(tmp_path, tree, expected):
    (tmp_path / "t.tree").write_text(tree)
    cfg = tmp_path / "t.cfg"
    cfg.write_text("[net]\nwidth=1\nheight=1\nchannels=3\n\n[softmax]\ntree=t.tree\n")
    res = CliRunner().invoke(main, ["classify", str(cfg), str(tmp_path)])
    assert res.exit_code == 1 and expected in res.output and len(res.output.strip().splitlines()) == 1


def test_tree_softmax_is_not_trained(tmp_path):
    """What the trainer asks at start-up refuses a tree in one line (the reference's CPU training would pass the
    groups without a truth a delta of -1234 - p)."""
    from darkcfg.train.losses import NotTrainableError, trainable_layers

    model, _, _ = _tree_model(tmp_path)
    with pytest.raises(NotTrainableError, match=r"layer 2 \[softmax\]: training a \[softmax\] with a word tree"):
        trainable_layers(model)


# -- commands, refusals, API ------------------------------------------------------------------------------------------
def test_detector_and_classifier_refuse_each_other(shapes):
    out, _ = shapes
    res = CliRunner().invoke(main, ["classify", str(REPO / "cfg" / "yolov3-tiny.cfg"), str(out / "valid")])
    assert res.exit_code == 1 and "is a detection head: this is a detector, use darkcfg detect" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(main, ["detect", str(out / "small.cfg"), str(out / "small.weights"), str(out / "valid"),
                                    "--nosave"])
    assert res.exit_code == 1 and "is a classifier: use darkcfg classify" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_classify_command_details(shapes, tmp_path):
    """top= of the .data capped at classes, folders, -t, one-line errors for a bad image and a short names file."""
    out, _ = shapes
    data = tmp_path / "five.data"
    data.write_text(f"classes=4\nnames={out / 'shapes.names'}\ntop=5\n")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    res = CliRunner().invoke(main, ["classify", str(out / "small.cfg"), str(out / "small.weights"), str(out / "valid"),
                                    str(bad), "--data", str(data)])
    assert res.exit_code == 1
    blocks = _parse_cli(res.stdout)
    assert len(blocks) == 12 and all(len(b[1]) == 4 for b in blocks)  # top=5 capped at classes=4
    assert f"{bad}: not an image" in res.stderr
    first = sorted((out / "valid").iterdir())[0]
    res = CliRunner().invoke(main, ["classify", str(out / "small.cfg"), str(out / "small.weights"), "-"],
                             input=f"{first}\n")  # no image: paths from stdin, as the reference asks for them
    assert res.exit_code == 0, res.output
    prompt, top1, again = res.stdout.split("\n")  # top=1 without a .data file, the reference's default
    assert prompt.startswith(f"Enter Image Path: {first}: Predicted in ") and again == "Enter Image Path: "
    assert re.fullmatch(r"[0-3]: \d\.\d{6}", top1)
    res = CliRunner().invoke(main, ["classify", str(out / "small.cfg"), str(out / "small.weights"),
                                    str(out / "valid"), "-t", "1", "-q", "-o", str(tmp_path / "t.json")])
    assert res.exit_code == 0 and res.stdout == ""
    entries = json.loads((tmp_path / "t.json").read_text())
    assert len(entries) == 12 and all(len(e["top"]) == 1 and e["top"][0]["name"].isdigit() for e in entries)
    short = tmp_path / "short.names"
    short.write_text("a\nb\n")
    res = CliRunner().invoke(main, ["classify", str(out / "small.cfg"), str(out / "small.weights"),
                                    str(out / "valid"), "-n", str(short)])
    assert res.exit_code == 1 and "has 2 names, expected 4" in res.output
    data.write_text(f"classes=5\nnames={out / 'shapes.names'}\n")  # the reference stops on this too
    res = CliRunner().invoke(main, ["classify", str(out / "small.cfg"), str(out / "small.weights"),
                                    str(out / "valid"), "--data", str(data)])
    assert res.exit_code == 1 and "has 4 outputs" in res.output and "classes=5" in res.output


def test_python_api(shapes):
    out, model = shapes
    valid = (out / "valid.txt").read_text().split()
    one = classify(model, valid[0], top=3, names=["circle", "square", "triangle", "cross"])
    assert len(one) == 3 and isinstance(one[0], Prediction) and one[0].name in ("circle", "square", "triangle",
                                                                                 "cross")
    assert one[0].probability >= one[1].probability >= one[2].probability
    many = classify(model, valid[:2])
    assert len(many) == 2 and len(many[0]) == 4  # top=5 capped at the 4 outputs
    assert Darknet.classifier is classify


def test_darknet_classifier_verbs_rerun_darkcfg(monkeypatch):
    import darkcfg.cli.darknet as dn

    calls = []
    monkeypatch.setattr(dn, "_rerun", calls.append)
    runner = CliRunner()
    assert runner.invoke(main, ["classifier", "train", "a.data", "a.cfg", "a.weights", "-clear"]).exit_code == 0
    assert runner.invoke(main, ["classifier", "predict", "a.data", "a.cfg", "a.weights", "x.jpg", "-t", "3"]) \
        .exit_code == 0
    assert runner.invoke(main, ["classifier", "predict", "a.data", "a.cfg", "a.weights", "-t", "3"]).exit_code == 0
    assert runner.invoke(main, ["classifier", "validmulti", "a.data", "a.cfg", "a.weights"]).exit_code == 0
    assert calls == [["train", "a.data", "a.cfg", "a.weights", "-clear"],
                     ["classify", "a.cfg", "a.weights", "x.jpg", "-t", "3", "--data", "a.data"],
                     ["classify", "a.cfg", "a.weights", "-t", "3", "-", "--data", "a.data"],
                     ["classifier-valid", "a.data", "a.cfg", "a.weights", "--crops", "multi"]]


# -- partial: a classifier's prefix seeds a detector -----------------------------------------------------------------
@needs_shared
def test_partial_darknet53_seeds_yolov3(tmp_path):
    """`partial darknet53.cfg darknet53.weights darknet53.conv.74 74`: the header (0.2.5, seen 0) and then, byte for
    byte, the first 74 layers' blobs of the original file; yolov3.cfg (whose first 74 layers are darknet53's)
    loads it as a prefix."""
    d53 = Darknet.from_file(CFG_DIR / "darknet53.cfg", warn_unused=False)
    randomize(d53, 5)
    save_weights(d53, tmp_path / "d53.weights", header=WeightsHeader(seen=123456))
    res = CliRunner().invoke(main, ["partial", str(CFG_DIR / "darknet53.cfg"), str(tmp_path / "d53.weights"),
                                    str(tmp_path / "d53.conv.74"), "74"])
    assert res.exit_code == 0, res.output
    # the blob sizes from the cfg's numbers: each [convolutional] with batch_normalize has filters biases,
    # scales, means and variances, then filters x channels x size x size weights
    nbytes = 0
    for layer in list(d53.layers)[:74]:
        if layer.ltype == "conv":
            f, c, k = layer.out_shape.c, layer.in_shape.c, layer.conv.weight.shape[-1]
            nbytes += 4 * (4 * f + f * c * k * k)
    original = (tmp_path / "d53.weights").read_bytes()
    prefix = (tmp_path / "d53.conv.74").read_bytes()
    assert prefix[:20] == np.array([0, 2, 5], "<i4").tobytes() + np.array([0], "<u8").tobytes()
    assert len(prefix) == 20 + nbytes and prefix[20:] == original[20:20 + nbytes]
    yolo = Darknet.from_file(CFG_DIR / "yolov3.cfg", warn_unused=False)
    report = load_weights(yolo, tmp_path / "d53.conv.74")
    assert report.upto == 74 and report.layers_loaded == 52
    for a, b in zip(list(d53.layers)[:74], list(yolo.layers)[:74]):
        for ta, tb in zip(a.state_dict().values(), b.state_dict().values()):
            assert torch.equal(ta, tb)
