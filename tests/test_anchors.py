"""calc-anchors recovers known clusters; output like the reference's."""
import numpy as np
from click.testing import CliRunner

from darkcfg.cli import main
from darkcfg.train.anchors import anchors_line, kmeans_anchors, wh_iou

CLUSTERS = np.array([[20, 30], [60, 50], [150, 120], [300, 280]], float)


def _points(n_per=60, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([c * rng.uniform(0.93, 1.07, size=(n_per, 2)) for c in CLUSTERS])


def test_kmeans_recovers_clusters_and_is_deterministic():
    anchors, iou = kmeans_anchors(_points(), 4, seed=3)
    np.testing.assert_allclose(anchors, CLUSTERS, rtol=0.03)
    assert iou > 0.9
    again, _ = kmeans_anchors(_points(), 4, seed=3)
    np.testing.assert_array_equal(anchors, again)
    assert wh_iou(np.array([[10, 10]]), np.array([[10, 10], [20, 5]])).tolist() == [[1.0, 50 / 150]]


def test_cli(tmp_path):
    pts = _points(20)
    lines = []
    for k in range(0, len(pts), 10):  # 8 images of 10 boxes, labels relative to 416x416
        img = tmp_path / f"im{k}.jpg"
        img.write_bytes(b"")
        rows = "".join(f"0 0.5 0.5 {w / 416:.6f} {h / 416:.6f}\n" for w, h in pts[k:k + 10])
        (tmp_path / f"im{k}.txt").write_text(rows)
        lines.append(str(img))
    (tmp_path / "train.txt").write_text("\n".join(lines))
    (tmp_path / "obj.data").write_text(f"classes=1\ntrain={tmp_path / 'train.txt'}\n")
    r = CliRunner().invoke(main, ["calc-anchors", str(tmp_path / "obj.data"), "--num", "4", "--width", "416",
                                  "--height", "416", "-o", str(tmp_path / "anchors.txt")])
    assert r.exit_code == 0, r.output
    got = np.array([float(v) for v in (tmp_path / "anchors.txt").read_text().split(",")]).reshape(-1, 2)
    np.testing.assert_allclose(got, CLUSTERS, rtol=0.04, atol=1)
    assert "anchors =  20, 30,  60, 50, 151,122, 301,279" in r.stdout  # cfg-ready, the %3.0f format
    assert "avg IoU = " in r.stdout
    assert anchors_line(np.array([[1.5, 2.25]]), 13) == "1.5000,2.2500"
    (tmp_path / "im0.txt").write_text("3 0.5 0.5 0.1 0.1\n")
    r = CliRunner().invoke(main, ["calc-anchors", str(tmp_path / "obj.data"), "--width", "416", "--height", "416",
                                  "-o", str(tmp_path / "a.txt")])
    assert r.exit_code == 1 and "im0.txt:1: class id 3, expected 0..0" in r.output


def test_letterbox_measures_boxes_as_the_network_sees_them_and_the_cfg_anchors_are_scored(tmp_path):
    """832x416 images into a 416x416 letterboxed network: a box of relative (w, h) is (w*416, h*208) pixels
    there (s = .5), not (w*416, h*416) as the reference's stretching calc_anchors measures it."""
    import cv2
    pts = _points(10)
    lines = []
    for k in range(0, len(pts), 10):
        img = tmp_path / f"im{k}.png"
        cv2.imwrite(str(img), np.zeros((416, 832, 3), np.uint8))
        rows = "".join(f"0 0.5 0.5 {w / 416:.6f} {h / 208:.6f}\n" for w, h in pts[k:k + 10] if h < 208)
        (tmp_path / f"im{k}.txt").write_text(rows)
        lines.append(str(img))
    (tmp_path / "train.txt").write_text("\n".join(lines))
    (tmp_path / "obj.data").write_text(f"classes=1\ntrain={tmp_path / 'train.txt'}\n")
    cfg = tmp_path / "lb.cfg"
    cfg.write_text("[net]\nwidth=416\nheight=416\nchannels=3\nletter_box=1\n[convolutional]\nfilters=18\nsize=1\n"
                   "stride=32\nactivation=linear\n[yolo]\nmask=0,1,2\nanchors=20,30,60,50,150,120\nclasses=1\nnum=3\n")
    r = CliRunner().invoke(main, ["calc-anchors", str(tmp_path / "obj.data"), "--cfg", str(cfg), "-o",
                                  str(tmp_path / "a.txt")])
    assert r.exit_code == 0, r.output
    assert "num_of_clusters = 3, width = 416, height = 416" in r.stdout and "(letterboxed)" in r.stdout
    got = np.array([float(v) for v in (tmp_path / "a.txt").read_text().split(",")]).reshape(-1, 2)
    kept = np.array([p for p in pts if p[1] < 208])
    expect, _ = kmeans_anchors(kept, 3, seed=0)
    np.testing.assert_allclose(got, expect, atol=0.5)  # the letterboxed sizes, not doubled heights
    current = wh_iou(kept, np.array([[20, 30], [60, 50], [150, 120]], float)).max(axis=1).mean()
    assert f"avg IoU with the cfg's current anchors = {current * 100:2.2f} %" in r.stdout
    r = CliRunner().invoke(main, ["calc-anchors", str(tmp_path / "obj.data"), "--cfg", str(cfg), "--no-letterbox",
                                  "-o", str(tmp_path / "b.txt")])
    stretched = np.array([float(v) for v in (tmp_path / "b.txt").read_text().split(",")]).reshape(-1, 2)
    assert stretched[:, 1].sum() > 1.5 * got[:, 1].sum()
