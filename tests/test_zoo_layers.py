"""The last zoo layers and mismatches: binary/xnor convolutions and [local] against loop transcriptions of the
reference's C code, [contrastive], share_index with its own dilation, anchors shorter than 2*num, mask >= num,
text models with only `inputs` in [net]; and `darkcfg info` on every zoo cfg in ../shared."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from oracle import CFG_DIR, needs_shared, shared_cfgs

from darkcfg import CfgError
from darkcfg.model.network import Darknet

CONV = """[net]
width=5
height=4
channels=3
[convolutional]
batch_normalize={bn}
filters=4
size=3
stride={stride}
pad=1
groups={groups}
binary={binary}
xnor={xnor}
activation=leaky
"""


def c_conv(x, w, stride, pad):
    """A direct loop convolution (one image): x (C, H, W), w (N, C, k, k) -> (N, OH, OW), zero padding."""
    c, h, wd = x.shape
    n, _, k, _ = w.shape
    oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    out = np.zeros((n, oh, ow), np.float64)
    for f in range(n):
        for y in range(oh):
            for xx in range(ow):
                s = 0.0
                for ch in range(c):
                    for ky in range(k):
                        for kx in range(k):
                            iy, ix = y * stride + ky - pad, xx * stride + kx - pad
                            if 0 <= iy < h and 0 <= ix < wd:
                                s += w[f, ch, ky, kx] * x[ch, iy, ix]
                out[f, y, xx] = s
    return out


def c_binarize_weights(w):
    """binarize_weights: per filter, mean |w| with the sign of w (w > 0 -> +mean, else -mean)."""
    out = np.empty_like(w)
    for f in range(w.shape[0]):
        flat = w[f].reshape(-1)
        mean = sum(abs(float(v)) for v in flat) / flat.size
        out[f] = np.array([mean if v > 0 else -mean for v in flat]).reshape(w[f].shape)
    return out


@pytest.mark.parametrize("binary,xnor,bn,stride,groups", [(1, 0, 0, 1, 1), (0, 1, 1, 2, 1), (1, 1, 0, 1, 3)])
def test_binary_and_xnor_convolutions_follow_the_reference(binary, xnor, bn, stride, groups):
    model = Darknet(CONV.format(binary=binary, xnor=xnor, bn=bn, stride=stride, groups=groups), "b.cfg").eval()
    conv = model.layers[0]
    assert conv.groups == (1 if xnor else groups)  # xnor forces groups=1
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        conv.conv.weight.uniform_(-1, 1, generator=g)
        if conv.bn is not None:
            conv.bn.running_mean.uniform_(-0.2, 0.2, generator=g)
            conv.bn.running_var.uniform_(0.5, 1.5, generator=g)
            conv.bn.weight.uniform_(0.5, 1.5, generator=g)
        b = conv.bn.bias if conv.bn is not None else conv.conv.bias
        b.uniform_(-0.5, 0.5, generator=g)
    x = torch.rand(1, 3, 4, 5, generator=g) * 2 - 1
    with torch.no_grad():
        got = model.forward_all(x)[0][0].numpy()
    w = c_binarize_weights(conv.conv.weight.detach().numpy())
    inp = x[0].numpy()
    if xnor:
        inp = np.where(inp > 0, 1.0, -1.0)
    y = c_conv(inp, w, stride, 1)
    if bn:
        y = (y - conv.bn.running_mean.numpy()[:, None, None]) / np.sqrt(conv.bn.running_var.numpy()[:, None, None]
                                                                       + 1e-5)
        y = y * conv.bn.weight.detach().numpy()[:, None, None] + conv.bn.bias.detach().numpy()[:, None, None]
    else:
        y = y + conv.conv.bias.detach().numpy()[:, None, None]
    y = np.where(y > 0, y, 0.1 * y)
    np.testing.assert_allclose(got, y, rtol=1e-5, atol=1e-5)
    assert model.layer_table().splitlines()[1].split()[1] == ("convX" if xnor else "conv")


def test_binary_convolutions_train_their_real_weights():
    model = Darknet(CONV.format(binary=0, xnor=1, bn=0, stride=1, groups=1), "b.cfg").train()
    x = (torch.rand(1, 3, 4, 5) * 2 - 1).requires_grad_(True)
    model.forward_all(x)[0].sum().backward()
    assert model.layers[0].conv.weight.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0 and torch.all(x.grad[(x.abs() >= 1)] == 0)


LOCAL = """[net]
width=5
height=4
channels=2
[local]
size=3
stride={stride}
pad={pad}
filters=3
activation=leaky
"""


@pytest.mark.parametrize("stride,pad", [(1, 1), (2, 0)])
def test_local_layer_follows_forward_local_layer(stride, pad):
    model = Darknet(LOCAL.format(stride=stride, pad=pad), "l.cfg").eval()
    layer = model.layers[0]
    with torch.no_grad():
        layer.bias.uniform_(-1, 1)
    x = torch.rand(1, 2, 4, 5)
    with torch.no_grad():
        got = model.forward_all(x)[0][0].numpy()
    n, oh, ow = layer.out_shape
    w = layer.weight.detach().numpy().reshape(oh * ow, n, 2, 3, 3)  # location, filter, c, ky, kx
    expect = np.zeros((n, oh, ow))
    inp = x[0].numpy()
    for y in range(oh):
        for xx in range(ow):
            patch = np.zeros((2, 3, 3))
            for ky in range(3):
                for kx in range(3):
                    iy, ix = y * stride + ky - pad, xx * stride + kx - pad
                    if 0 <= iy < 4 and 0 <= ix < 5:
                        patch[:, ky, kx] = inp[:, iy, ix]
            for f in range(n):
                expect[f, y, xx] = (w[y * ow + xx, f] * patch).sum() + layer.bias[f, y, xx].item()
    expect = np.where(expect > 0, expect, 0.1 * expect)
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-6)
    # weights: biases (filters*locations) then each location's matrix
    blobs = layer.darknet_blobs()
    assert [b.tensor.numel() for b in blobs] == [n * oh * ow, oh * ow * n * 2 * 9]


SHARE = """[net]
width=16
height=16
channels=3
[convolutional]
filters=3
size=3
pad=1
dilation=1
activation=linear
[convolutional]
filters=3
size=3
pad=1
dilation=2
share_index=0
activation=linear
"""


def test_share_index_uses_its_own_dilation_and_padding():
    """resnet152_trident's shared branches: the weights of layer 0, the geometry of layer 1 (dilation 2, padding
    2 = pad * dilation), so 16x16 stays 16x16."""
    model = Darknet(SHARE, "s.cfg").eval()
    assert model.shapes[1] == (3, 16, 16)
    x = torch.rand(1, 3, 16, 16)
    w = model.layers[0].conv
    with torch.no_grad():
        got = model.layers[1](x, [])
        expect = torch.nn.functional.conv2d(x, w.weight, w.bias, 1, 2, 2)
    torch.testing.assert_close(got, expect)
    assert model.layers[1].darknet_blobs() == []


YOLO = """[net]
width=32
height=32
channels=3
[convolutional]
filters=18
size=1
activation=linear
[yolo]
mask={mask}
anchors={anchors}
classes=1
num=3
"""


def test_short_anchors_are_filled_with_a_warning_naming_the_line():
    with pytest.warns(UserWarning, match=r"y.cfg:11: .*anchors has 4 values, expected 2\*num = 6; the rest are 0.5"):
        model = Darknet(YOLO.format(mask="0,1,2", anchors="10,14,23,27"), "y.cfg")
    assert model.layers[1].anchors.flatten().tolist() == [10, 14, 23, 27, 0.5, 0.5]


def test_a_mask_index_past_num_stays_an_error():
    with pytest.raises(CfgError, match=r"y.cfg:\d+: .*mask"):
        Darknet(YOLO.format(mask="0,1,3", anchors="10,14,23,27,37,58"), "y.cfg")


def test_text_models_take_inputs_from_net():
    text = "[net]\ninputs=8\ntime_steps=1\n[rnn]\nhidden=6\noutput=8\nactivation=leaky\n[softmax]\n[cost]\n"
    model = Darknet(text, "t.cfg").eval()
    assert model.input_shape == (8, 1, 1)
    with torch.no_grad():
        y = model(torch.rand(1, 8, 1, 1))[0]
    assert y.shape == (1, 8, 1, 1) and abs(float(y.sum()) - 1) < 1e-5


CONTRASTIVE = YOLO.format(mask="0,1,2", anchors="10,14,23,27,37,58") + """embedding_layer=-2
[route]
layers=-2
[contrastive]
classes=1
yolo_layer={ref}
"""


def test_contrastive_passes_its_input_on_and_refuses_training():
    from darkcfg.train.losses import NotTrainableError, trainable_layers
    text = CONTRASTIVE.replace("filters=18", "filters=18\n[convolutional]\nfilters=18\nsize=1\nactivation=linear",
                               1).replace("layers=-2", "layers=-3")
    model = Darknet(text.format(ref=-2), "c.cfg").eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        outs = model.forward_all(x)
    assert torch.equal(outs[-1], outs[-2])
    assert model.output_layers == [2]  # the [yolo]; [contrastive] is not a head
    with pytest.raises(NotTrainableError, match=r"^c.cfg: layer 4 \[contrastive\]: "):
        trainable_layers(model)
    with pytest.raises(CfgError, match=r"yolo_layer=-1 must name a \[yolo\] layer"):
        Darknet(text.format(ref=-1), "c.cfg")


@needs_shared
def test_every_shared_zoo_cfg_builds():
    """Every cfg of ../shared/darknet/cfg builds; the glob must find at least each cfg the reference printed a layer
    table for (15), so an empty or wrong folder fails instead of building nothing."""
    cfgs = sorted(CFG_DIR.glob("*.cfg"))
    expected = set(shared_cfgs())
    assert len(expected) >= 15 and expected <= {p.stem for p in cfgs}, \
        f"{CFG_DIR}: missing {sorted(expected - {p.stem for p in cfgs})}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cfg in cfgs:
            model = Darknet.from_file(cfg, size=(64, 64), warn_unused=False)
            assert len(model.layers) > 1, cfg


TREE = "a -1\nb -1\nc 0\nd 0\ne 0\nf 1\ng 1\n"  # groups: [a b] [c d e] under a, [f g] under b


def c_top_prediction(pred, parent, group_offset, group_size, child, thresh):
    """tree.c:hierarchy_top_prediction, loop by loop (stride 1)."""
    p, group = 1.0, 0
    while True:
        mx, max_i = 0.0, 0
        for i in range(group_size[group]):
            index = i + group_offset[group]
            if pred[index] > mx:
                max_i, mx = index, pred[index]
        if p * mx > thresh:
            p *= mx
            group = child[max_i]
            if child[max_i] < 0:
                return max_i
        elif group == 0:
            return max_i
        else:
            return parent[group_offset[group]]


def test_a_word_tree_region_follows_softmax_tree_and_the_hierarchy(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.tree").write_text(TREE)
    (tmp_path / "data" / "t.map").write_text("3\n5\n0\n")
    (tmp_path / "cfg").mkdir()
    text = ("[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters=12\nsize=1\nactivation=linear\n"
            "[region]\nanchors=1,1\nclasses=7\ncoords=4\nnum=1\nsoftmax=1\ntree=data/t.tree\n{map}")
    cfg = tmp_path / "cfg" / "t.cfg"
    cfg.write_text(text.format(map="map=data/t.map\n"))
    model = Darknet.from_file(cfg).eval()  # the files are found beside the cfg's folder, as darknet's layout has them
    head = model.layers[1]
    x = torch.randn(1, 12, 16, 16)
    out = head(x, [])
    cls = out.reshape(1, 16, 16, 12)[..., 5:]
    raw = x.permute(0, 2, 3, 1)[..., 5:]
    groups = [(0, 2), (2, 3), (5, 2)]
    for o, n in groups:
        torch.testing.assert_close(cls[..., o:o + n], raw[..., o:o + n].softmax(-1))
    d = head.decode_grid(out, 32, 32)  # (B, H, W, n) with n = 1
    d.probs = d.probs[..., 0, :]
    scale = out.reshape(1, 16, 16, 12)[..., 4]
    h = cls.clone()
    parent = [-1, -1, 0, 0, 0, 1, 1]
    for j in range(7):  # hierarchy_predictions: parents come first
        if parent[j] >= 0:
            h[..., j] = h[..., j] * h[..., parent[j]]
    torch.testing.assert_close(d.probs[..., :3], scale[..., None] * h[..., [3, 5, 0]])
    assert not d.probs[..., 3:].any()
    cfg.write_text(text.format(map=""))
    plain = Darknet.from_file(cfg).eval().layers[1]
    plain.load_state_dict(head.state_dict())
    d2 = plain.decode_grid(out, 32, 32)
    d2.probs = d2.probs[..., 0, :]
    flat = cls.reshape(-1, 7)
    top = [c_top_prediction(r, parent, [0, 2, 5], [2, 3, 2], [1, 2, -1, -1, -1, -1, -1], 0.5) for r in flat.tolist()]
    got = d2.probs.reshape(-1, 7).argmax(-1).tolist()
    assert got == top and len(set(top)) > 1
    torch.testing.assert_close(d2.probs.reshape(-1, 7).max(-1).values, scale.reshape(-1))
    from darkcfg.train.losses import NotTrainableError, trainable_layers
    with pytest.raises(NotTrainableError, match=r"layer 1 \[region\]: training with a word tree"):
        trainable_layers(model)
    cfg.write_text(text.format(map="").replace("t.tree", "missing.tree"))
    with pytest.raises(CfgError, match=r"tree=data/missing.tree: no such file"):
        Darknet.from_file(cfg)
