"""The C reference's own layer outputs for yolov3-tiny on dog.jpg with the real weights."""
import numpy as np
import pytest
import torch
from oracle import CFG_DIR, REF, SHARED, needs_shared

import darkcfg


@needs_shared
def test_yolov3_tiny_layers_match_reference():
    ref = np.load(REF / "forward" / "yolov3-tiny_dog.npz")
    model = darkcfg.load(CFG_DIR / "yolov3-tiny.cfg", SHARED / "darknet" / "weights" / "yolov3-tiny.weights")
    with torch.no_grad():
        outs = model.forward_all(torch.from_numpy(ref["input"]))
    keys = [k for k in ref.files if k.startswith("layer_")]
    assert len(keys) == 8
    for k in keys:
        i = int(k[len("layer_"):])
        r, o = ref[k], outs[i][0].numpy()
        assert o.shape == r.shape, k
        rel = np.abs(o - r).max() / np.abs(r).max()
        assert rel <= 1e-4, f"{k} [{model.layers[i].ltype}]: {rel:.2e}"
    # the heads' outputs are what forward() returns
    heads = model(torch.from_numpy(ref["input"]))
    assert [h.shape[1:] for h in heads] == [(255, 13, 13), (255, 26, 26)]
    np.testing.assert_allclose(heads[0][0].detach().numpy(), ref["layer_016"], rtol=0, atol=1e-4)


@needs_shared
def test_forward_rejects_wrong_input_size():
    model = darkcfg.load(CFG_DIR / "yolov3-tiny.cfg", size=64)
    with pytest.raises(ValueError, match=r"expected input \(B, 3, 64, 64\)"):
        model(torch.zeros(1, 3, 32, 32))
