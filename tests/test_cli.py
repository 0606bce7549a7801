"""The command line: readable help, the layer table, and one-line errors for bad input."""
import subprocess
import sys

from click.testing import CliRunner
from oracle import CFG_DIR, REF, REPO, needs_shared

from darkcfg.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_help_lists_the_commands():
    r = run("--help")
    assert r.exit_code == 0
    for cmd in ("info", "partial", "convert", "demo"):
        assert cmd in r.output


@needs_shared
def test_info_prints_the_reference_total_and_weights_size():
    r = run("info", CFG_DIR / "yolov4-tiny.cfg")
    assert r.exit_code == 0, r.output
    total = next(t for t in (REF / "layers" / "yolov4-tiny.txt").read_text().splitlines() if t.startswith("Total"))
    assert total.strip() in r.output
    assert "24,251,276 bytes" in r.output  # DARKNET_SEMANTICS.md section 2
    r = run("info", CFG_DIR / "yolov4-tiny.cfg", "--size", "320x192")
    assert r.exit_code == 0 and " 10 x   6 x 255" in r.output


def test_bad_inputs_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text("[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters=4\n[route]\nlayers=-5\n")
    for args, expect in [
        (("info", tmp_path / "missing.cfg"), "cannot read cfg file"),
        (("info", bad), "bad.cfg:8: layer 1 [route]: layers=-5 refers to layer -4"),
        (("info", bad, "--size", "0x3"), "expected N or WxH with positive numbers"),
    ]:
        r = run(*args)
        assert r.exit_code != 0
        assert expect in r.output
        assert "Traceback" not in r.output
    good = tmp_path / "good.cfg"
    good.write_text("[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters=4\n")
    (tmp_path / "w.weights").write_bytes(b"\0" * 30)
    r = run("convert", tmp_path / "w.weights", tmp_path / "o.pt", "--cfg", good)
    assert r.exit_code == 1 and "w.weights: file ends inside layer 0 [conv]" in r.output
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    r = run("convert", tmp_path / "junk.pt", tmp_path / "x.weights")
    assert r.exit_code == 1 and "junk.pt: not a darkcfg checkpoint" in r.output
    r = run("convert", tmp_path / "w.weights", tmp_path / "x.pt")
    assert r.exit_code == 2 and "needs --cfg" in r.output


def test_a_single_dash_word_is_never_split(tmp_path):
    """`-onx` would be `-o nx` to click: refused, naming the word; Darknet's own spellings are aliases."""
    for args, word in ((("detect", "cfg.cfg", "x.jpg", "-onx"), "-onx"), (("map", "a.data", "b.cfg", "-thres", ".3"),
                                                                          "-thres")):
        r = run(*args)
        assert r.exit_code == 2 and f"no such option: {word}" in r.output, r.output
    r = run("calc-anchors", "--help")
    assert "-num_of_clusters" in r.output and "-width" in r.output
    r = run("train", "--help")
    assert "-map" in r.output and "-clear" in r.output


def test_a_cfg_with_a_bom_builds(tmp_path):
    cfg = tmp_path / "bom.cfg"
    cfg.write_bytes(b"\xef\xbb\xbf[net]\r\nwidth=32\r\nheight=32\r\nchannels=3\r\n[convolutional]\r\nfilters=4\r\n")
    r = run("info", cfg)
    assert r.exit_code == 0 and "conv" in r.output, r.output


def test_info_checks_a_weights_file(tmp_path):
    from darkcfg.model.loading import shipped

    cfg, weights = shipped("cfg", "yolov3-tiny.cfg"), shipped("weights", "yolov3-tiny.weights")
    r = run("info", cfg, "-w", weights)
    assert r.exit_code == 0 and "weights: " in r.output and "fits: all 24 layers" in r.output, r.output
    r = run("info", cfg, "--size", "320", "-w", weights)
    assert r.exit_code == 0, r.output
    short = tmp_path / "short.weights"
    short.write_bytes(weights.read_bytes()[:1000])
    r = run("info", cfg, "-w", short)
    assert r.exit_code == 1 and "short.weights: file ends inside layer" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_help_does_not_import_torch():
    """`darkcfg --help` (and every command's --help) answers without loading PyTorch: the CLI starts cheap."""
    code = ("import sys\nfrom darkcfg.cli import main\n"
            "for args in (['--help'], ['detect', '--help'], ['train', '--help'], ['data', 'check', '--help']):\n"
            "    try:\n        main(args)\n    except SystemExit as e:\n        assert e.code == 0, e.code\n"
            "import darkcfg\nassert 'torch' not in sys.modules and 'cv2' not in sys.modules, "
            "sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'cv2'))[:5]\n"
            "assert darkcfg.Darknet.__name__ == 'Darknet' and 'torch' in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
