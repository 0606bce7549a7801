"""The OpenVINO runtime's cache is checked before it is used: an IR whose files do not match the sha256 manifest
written beside it (a damaged .bin of the same size, a truncated or empty .xml, no manifest) is converted again with
one warning naming the folder, and runs as the intact one did; `export --format openvino` writes no manifest."""
from __future__ import annotations

import json
import warnings

import pytest
import torch

import darkcfg
from darkcfg.errors import DarkcfgWarning

openvino = pytest.importorskip("openvino")

from darkcfg.infer.openvino import OpenVinoModel, convert  # noqa: E402
from darkcfg.infer.openvino.graph import file_digest, ir_damage, manifest_path, save_ir  # noqa: E402

CFG = ("[net]\nwidth=32\nheight=32\nchannels=3\n"
       "[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\nstride=2\npad=1\nactivation=leaky\n"
       "[convolutional]\nfilters=18\nsize=1\nactivation=linear\n"
       "[yolo]\nmask=0,1,2\nanchors=10,14, 23,27, 37,58\nclasses=1\nnum=3\n")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DARKCFG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def net() -> tuple[darkcfg.Darknet, torch.Tensor, torch.Tensor]:
    """A network with seeded random weights, an input (1, 3, 32, 32) and its first head's output."""
    torch.manual_seed(0)
    model = darkcfg.Darknet(CFG, "test.cfg").eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        return model, x, model(x)[0]


def _load(model: darkcfg.Darknet) -> tuple[OpenVinoModel, list[str]]:
    """OpenVinoModel(model) and the darkcfg warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = OpenVinoModel(model)
    return m, [str(w.message) for w in caught if issubclass(w.category, DarkcfgWarning)]


def test_the_cache_writes_a_manifest_and_trusts_an_intact_ir(net):
    model, x, ref = net
    first, said = _load(model)
    assert not first.cached and said == []
    manifest = json.loads(manifest_path(first._ir).read_text())
    files = manifest["files"]
    assert sorted(files) == ["model.bin", "model.xml"]
    for name, entry in files.items():
        f = first._ir.parent / name
        assert entry == {"bytes": f.stat().st_size, "sha256": file_digest(f)}
    again, said = _load(model)
    assert again.cached and said == [] and ir_damage(again._ir) is None
    assert float((again(x)[0] - ref).abs().max() / ref.abs().max()) < 1e-4


def _damage_bin(xml):
    """Overwrite the middle of the .bin (the weights) with 0xff, keeping its size: NaN weights."""
    b = xml.with_suffix(".bin")
    size = b.stat().st_size
    with open(b, "r+b") as fh:
        fh.seek(size // 4)
        fh.write(b"\xff" * (size // 2))
    assert b.stat().st_size == size


@pytest.mark.parametrize("damage, reason", [
    (_damage_bin, "model.bin: sha256 differs from the manifest's"),
    (lambda xml: xml.write_bytes(xml.read_bytes()[: xml.stat().st_size // 2]), "model.xml: "),
    (lambda xml: xml.write_bytes(b""), "model.xml: 0 bytes, expected "),
], ids=["bin-same-size", "xml-truncated", "xml-empty"])
def test_a_damaged_ir_is_converted_again_with_one_warning(net, damage, reason):
    model, x, ref = net
    intact = OpenVinoModel(model)
    expected = intact(x)[0]
    damage(intact._ir)
    rebuilt, said = _load(model)
    assert not rebuilt.cached
    assert len(said) == 1 and said[0].startswith(f"{intact._ir.parent}: the cached OpenVINO model model.xml is "
                                                 f"damaged ({reason}") and said[0].endswith("converting it again")
    got = rebuilt(x)[0]
    assert torch.equal(got, expected) and float((got - ref).abs().max() / ref.abs().max()) < 1e-4
    again, said = _load(model)  # rewritten whole: trusted again
    assert again.cached and said == []


def test_each_kind_of_damage_is_named(net, tmp_path):
    """`ir_damage` on one written IR, damaged in turn in each way (no manifest, an unreadable one, one of another
    format or missing a file, a file missing or of another size), restored in between."""
    model, x, _ = net
    xml = save_ir(convert(model, x), tmp_path / "ir" / "model.xml", manifest=True)
    assert ir_damage(xml) is None
    files = {f: f.read_bytes() for f in xml.parent.iterdir()}
    man = manifest_path(xml)
    entries = json.loads(man.read_text())
    other_format = json.dumps({**entries, "format": "x"})
    no_bin = json.dumps({**entries, "files": {"model.xml": entries["files"]["model.xml"]}})
    for damage, reason in [
        (lambda: man.unlink(), "no model.manifest.json"),
        (lambda: man.write_text("{not json"), "model.manifest.json unreadable"),
        (lambda: man.write_bytes(b"\xff\xfe"), "model.manifest.json unreadable: UnicodeDecodeError"),
        (lambda: man.write_text(other_format), "model.manifest.json unreadable"),
        (lambda: man.write_text(no_bin), "model.manifest.json does not list model.bin"),
        (lambda: xml.with_suffix(".bin").unlink(), "model.bin is missing"),
        (lambda: xml.with_suffix(".bin").write_bytes(files[xml.with_suffix(".bin")] + b"\0"), "model.bin: "),
    ]:
        damage()
        assert (ir_damage(xml) or "").startswith(reason), reason
        for f, data in files.items():
            f.write_bytes(data)
        assert ir_damage(xml) is None


def test_an_export_gets_no_manifest(net, tmp_path):
    """An exported IR is a file for other programs: no darkcfg manifest beside it."""
    model, x, _ = net
    xml = save_ir(convert(model, x), tmp_path / "out" / "net.xml")
    assert sorted(p.name for p in xml.parent.iterdir()) == ["net.bin", "net.xml"]
