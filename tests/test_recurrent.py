"""Recurrent layers ([rnn], [lstm], [gru], [crnn], [conv_lstm], [history]) against the reference: every layer's
output over three consecutive forwards (state carried as network_predict carries it), weights byte-identical,
and the options the stored references do not cover against loop transcriptions of the reference's C code."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from oracle import REF, needs_shared

from darkcfg.model.network import Darknet
from darkcfg.model.weights import load_weights, write_weights

SEQ = REF / "sequence"
TYPES = ["rnn", "lstm", "crnn", "conv_lstm", "detection"]


def reference_model(name: str) -> Darknet:
    model = Darknet.from_file(SEQ / f"{name}.cfg")
    load_weights(model, SEQ / f"{name}.weights")
    return model.eval()


def worst_error(model: Darknet, ref, frames) -> float:
    """Largest error over every layer and frame, relative to the layer's largest value, running the frames in
    order through one model (the state carried)."""
    worst = 0.0
    with torch.no_grad():
        for t in frames:
            outs = model.forward_all(torch.from_numpy(ref["input"][t:t + 1]))
            for i, o in enumerate(outs):
                r = ref[f"layer_{i:03d}"][t]
                shape = tuple(int(v) for v in ref[f"shape_{i:03d}"])
                if shape != (0, 0, 0):  # [detection] leaves its out_c/h/w unset; darkcfg keeps the input's
                    assert shape == tuple(model.shapes[i]), i
                worst = max(worst, float(np.abs(o.flatten().numpy() - r).max() / np.abs(r).max()))
    return worst


@needs_shared
@pytest.mark.parametrize("name", TYPES)
def test_every_layer_of_three_consecutive_frames_matches_the_reference(name):
    ref = np.load(SEQ / f"{name}.npz")
    model = reference_model(name)
    assert worst_error(model, ref, [0, 1, 2]) < 1e-4


@needs_shared
@pytest.mark.parametrize("name", TYPES)
def test_weights_load_and_save_byte_identical(name):
    model = reference_model(name)
    buf = io.BytesIO()
    write_weights(model, buf)
    assert buf.getvalue() == (SEQ / f"{name}.weights").read_bytes()


@needs_shared
@pytest.mark.parametrize("name", ["rnn", "lstm", "crnn", "conv_lstm"])
def test_state_matters_and_reset_state_starts_over(name):
    ref = np.load(SEQ / f"{name}.npz")
    model = reference_model(name)
    assert model.stateful
    x0 = torch.from_numpy(ref["input"][0:1])
    last = max(int(k[6:]) for k in ref.files if k.startswith("layer_"))
    with torch.no_grad():
        first = model(x0)[0]
        model(torch.from_numpy(ref["input"][1:2]))
        again = model(x0)[0]  # frame 0 after two frames: the state differs
        model.reset_state()
        fresh = model(x0)[0]
    r0 = ref[f"layer_{last:03d}"][0]
    assert np.abs(first.flatten().numpy() - r0).max() < 1e-4 * np.abs(r0).max()
    assert not torch.allclose(first, again, atol=1e-5)
    assert torch.equal(first, fresh)


@needs_shared
@pytest.mark.parametrize("name", ["lstm", "conv_lstm"])
def test_batch_slots_carry_their_own_state_and_do_not_leak(name):
    """Each slot of a batch continues its own state (two sequences side by side give each sequence's reference
    outputs); a batch of a different size starts from zero."""
    ref = np.load(SEQ / f"{name}.npz")
    model = reference_model(name)
    last = max(int(k[6:]) for k in ref.files if k.startswith("layer_"))
    frames = torch.from_numpy(ref["input"])
    with torch.no_grad():
        out = [model(torch.stack([frames[t], frames[0]]))[0] for t in range(3)]
    for t in range(3):  # slot 0 runs the sequence, slot 1 repeats frame 0
        r = ref[f"layer_{last:03d}"][t]
        assert np.abs(out[t][0].flatten().numpy() - r).max() < 1e-4 * np.abs(r).max()
    single = reference_model(name)
    with torch.no_grad():
        expect = [single(frames[0:1])[0] for _ in range(3)]
    for t in range(3):
        torch.testing.assert_close(out[t][1:], expect[t], rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        restarted = model(frames[0:1])[0]  # batch size changed: zero state
    torch.testing.assert_close(restarted, expect[0], rtol=1e-5, atol=1e-6)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def connected_np(sub, x):
    """forward_connected_layer at inference, in numpy: x (in,) -> act(BN(W x) or W x + b)."""
    w = sub.weight.detach().numpy()
    y = w @ x
    if sub.bn is not None:
        y = (y - sub.bn.running_mean.numpy()) / np.sqrt(sub.bn.running_var.numpy() + 1e-5)
        y = y * sub.scales.detach().numpy() + sub.bias.detach().numpy()
    else:
        y = y + sub.bias.detach().numpy()
    return sub.act(torch.from_numpy(y.astype(np.float32))).numpy()


GRU_CFG = """[net]
width=4
height=4
channels=2
[connected]
output=6
activation=leaky
[gru]
batch_normalize={bn}
output=5
"""


@pytest.mark.parametrize("bn", [0, 1])
def test_gru_follows_gru_layer_c(bn):
    """The reference's CPU [gru] gives NaN, so no stored output: forward_gru_layer transcribed step by step."""
    model = Darknet(GRU_CFG.format(bn=bn), "gru.cfg").eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "running_var") and m.running_var is not None:
                m.running_mean.uniform_(-0.2, 0.2, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    gru = model.layers[1]
    state = np.zeros(5, np.float32)
    for _ in range(3):
        x = torch.rand(1, 2, 4, 4, generator=g)
        with torch.no_grad():
            got = model.forward_all(x)[1].flatten().numpy()
            inp = model.layers[0](x, []).flatten().numpy()
        z = sigmoid(connected_np(gru.input_z, inp) + connected_np(gru.state_z, state))
        r = sigmoid(connected_np(gru.input_r, inp) + connected_np(gru.state_r, state))
        h = sigmoid(connected_np(gru.input_h, inp) + connected_np(gru.state_h, state * r))  # no USET: logistic
        out = np.empty_like(state)
        for i in range(5):  # weighted_sum_cpu(state, h, z)
            out[i] = z[i] * state[i] + (1 - z[i]) * h[i]
        np.testing.assert_allclose(got, out, rtol=1e-5, atol=1e-6)
        state = out


def test_gru_weights_are_in_the_reference_order():
    model = Darknet(GRU_CFG.format(bn=1), "gru.cfg")
    gru = model.layers[1]
    order = [gru.input_z, gru.input_r, gru.input_h, gru.state_z, gru.state_r, gru.state_h]
    blobs = gru.darknet_blobs()
    expect = [b.tensor for sub in order for b in sub.darknet_blobs()]
    assert all(a.tensor is b for a, b in zip(blobs, expect)) and len(blobs) == len(expect) == 6 * 5


def test_training_a_gru_is_refused_in_one_line():
    from darkcfg.train.losses import NotTrainableError, trainable_layers
    text = GRU_CFG.format(bn=0).replace("output=5", "output=6") + "[region]\nclasses=1\nnum=1\ncoords=4\n"
    model = Darknet(text, "gru.cfg")
    with pytest.raises(NotTrainableError, match=r"^gru.cfg: layer 1 \[gru\]: ") as e:
        trainable_layers(model)
    assert "\n" not in str(e.value)


HISTORY_CFG = """[net]
width=3
height=2
channels=2
time_steps={steps}
[history]
history_size=3
"""


def test_history_at_one_step_copies_the_input_and_leaves_the_rest_zero():
    model = Darknet(HISTORY_CFG.format(steps=1), "h.cfg").eval()
    x = torch.rand(2, 2, 2, 3)
    for _ in range(2):
        y = model.forward_all(x)[0]
        assert y.shape == (2, 6, 2, 3)
        assert torch.equal(y[:, :2], x) and not y[:, 2:].any()


def test_history_over_time_steps_follows_forward_history_layer():
    """time_steps=3, two sequences, two forwards in training mode: the C loop, transcribed."""
    steps, batch, size = 3, 2, 3
    model = Darknet(HISTORY_CFG.format(steps=steps), "h.cfg").train()
    inputs, outputs = 2 * 2 * 3, 2 * 2 * 3 * size
    prev = np.zeros(batch * outputs, np.float32)
    for _ in range(2):
        x = torch.rand(steps * batch, 2, 2, 3)
        got = model.forward_all(x)[0].detach().numpy().reshape(-1)
        inp = x.numpy().reshape(-1)
        out = np.zeros(steps * batch * outputs, np.float32)
        prev_out, prev_off = prev, 0
        for i in range(steps):
            for b in range(batch):
                i0, o0 = b * inputs + i * inputs * batch, b * outputs + i * outputs * batch
                out[o0 + inputs:o0 + inputs + inputs * (size - 1)] = \
                    prev_out[prev_off + b * outputs:prev_off + b * outputs + inputs * (size - 1)]
                out[o0:o0 + inputs] = inp[i0:i0 + inputs]
            prev_out, prev_off = out, i * outputs * batch
        prev = out[(steps - 1) * outputs * batch:].copy()
        np.testing.assert_array_equal(got, out)


CONV_LSTM_CFG = """[net]
width=6
height=5
channels=4
time_steps=1
[conv_lstm]
batch_normalize=1
size=3
pad=1
output=4
peephole={peephole}
bottleneck={bottleneck}
shortcut={shortcut}
lstm_activation={act}
state_constrain={constrain}
activation=leaky
"""


@pytest.mark.parametrize("peephole,bottleneck,shortcut,act,constrain", [
    (1, 0, 0, "tanh", 32), (0, 1, 0, "tanh", 32), (1, 1, 1, "tanh", 32), (0, 0, 0, "logistic", 32),
    (0, 0, 0, "tanh", 1)])
def test_conv_lstm_options_follow_the_reference(peephole, bottleneck, shortcut, act, constrain):
    """forward_conv_lstm_layer_gpu (bottleneck, shortcut, lstm_activation; the CPU path crashes with bottleneck
    and hard-codes tanh) transcribed, the sub-convolutions taken as verified by the stored references."""
    model = Darknet(CONV_LSTM_CFG.format(peephole=peephole, bottleneck=bottleneck, shortcut=shortcut, act=act,
                                         constrain=constrain), "cl.cfg").eval()
    layer = model.layers[0]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in layer.parameters():
            p.uniform_(-0.7, 0.7, generator=g)
    fn = {"tanh": np.tanh, "logistic": sigmoid}[act]

    def conv(sub, x):
        with torch.no_grad():
            return sub(torch.from_numpy(x)[None], [])[0].numpy()

    h = np.zeros((4, 5, 6), np.float32)
    c = np.zeros_like(h)
    for _ in range(3):
        x = torch.rand(1, 4, 5, 6, generator=g) * 4 - 2
        with torch.no_grad():
            got = model.forward_all(x)[0][0].numpy()
        xn = x[0].numpy()
        vf = conv(layer.vf, c) if peephole else 0
        vi = conv(layer.vi, c) if peephole else 0
        if bottleneck:
            wf = fn(conv(layer.wf, np.concatenate([h, xn])))
            u_in, w = wf, {"f": 0, "i": 0, "g": 0, "o": 0}
        else:
            u_in, w = xn, {k: conv(getattr(layer, "w" + k), h) for k in "figo"}
        u = {k: conv(getattr(layer, "u" + k), u_in) for k in "figo"}
        f = sigmoid(w["f"] + u["f"] + vf)
        i = sigmoid(w["i"] + u["i"] + vi)
        gg = fn(w["g"] + u["g"])
        c = f * c + i * gg
        vo = conv(layer.vo, c) if peephole else 0
        o = sigmoid(w["o"] + u["o"] + vo)
        h = o * fn(c)
        c = np.clip(c, -constrain, constrain)
        out = h.copy()
        if shortcut and bottleneck:
            flat = out.reshape(-1)
            flat[: flat.size // 2] += wf.reshape(-1)[: flat.size // 2]
        np.testing.assert_allclose(got, out, rtol=1e-4, atol=1e-5)


def test_recurrent_layers_backpropagate_through_time_steps():
    """time_steps=2: the batch is two steps of one sequence; the second step's output depends on the first
    step's input through the state, and in training [crnn] starts each forward from zero state."""
    text = """[net]
width=4
height=4
channels=2
time_steps=2
[crnn]
size=3
pad=1
output=3
hidden=2
activation=leaky
[conv_lstm]
size=3
pad=1
output=2
"""
    model = Darknet(text, "t.cfg").train()
    x = torch.rand(2, 2, 4, 4, requires_grad=True)
    out = model.forward_all(x)
    out[-1][1].sum().backward()
    assert x.grad[0].abs().sum() > 0  # step 2 reached step 1's input
    again = model.forward_all(x.detach())
    torch.testing.assert_close(again[0], out[0].detach())  # [crnn]: zero state each training forward
    assert not torch.allclose(again[1], out[1].detach())  # [conv_lstm]: the state goes on


TRACK_CFG = """[net]
width=32
height=32
channels=3
[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky
[crnn]
batch_normalize=1
size=3
pad=1
output=8
hidden=6
activation=leaky
[convolutional]
size=1
filters=18
activation=linear
[yolo]
mask=0,1,2
anchors=4,5,8,10,14,12
classes=1
num=3
"""


def test_detect_carries_state_along_a_video_and_resets_between_sources(tmp_path):
    """Frames of a video run one per forward with the state carried (whatever --batch is); each new source,
    and each batch of image files, starts from zero state."""
    import cv2
    from oracle import randomize

    from darkcfg.infer.detector import Detector
    from darkcfg.infer.sources import expand_sources, iter_frames
    model = Darknet(TRACK_CFG, "track.cfg")
    randomize(model, 3)
    model.eval()
    rng = np.random.default_rng(0)
    videos = []
    for v in range(2):
        path = tmp_path / f"clip{v}.avi"
        w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (48, 40))
        for _ in range(3):
            w.write(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
        w.release()
        videos.append(str(path))
    det = Detector(model, thresh=0.0, nms=0, batch=4)
    found, errors = expand_sources(videos + videos[:1])
    assert not errors
    got = [r.detections.probs for r in det.stream(iter_frames(found))]
    expect = []
    for src in found:
        model.reset_state()
        for frame in iter_frames([src]):
            bgr = frame.load()
            expect.append(det.run_batch([det.prepare(det.to_image(bgr))], [(48, 40)])[0].probs)
    assert len(got) == len(expect) == 9
    for g, e in zip(got, expect):
        np.testing.assert_array_equal(g, e)
    assert not np.array_equal(expect[0], expect[1])  # the state changes what the same network sees
    np.testing.assert_array_equal(got[6], got[0])  # the third source restarts the first video's state


def test_export_of_a_recurrent_network_is_refused_in_one_line(tmp_path):
    from darkcfg.errors import DarkcfgError
    from darkcfg.export import export
    model = Darknet(TRACK_CFG, "track.cfg")
    with pytest.raises(DarkcfgError, match=r"^track.cfg: layer 1 \[crnn\] carries state"):
        export(model, tmp_path / "t.onnx")
    assert not (tmp_path / "t.onnx").exists()


RNN_CFG = """[net]
width=3
height=2
channels=2
[rnn]
batch_normalize={bn}
hidden=5
output=4
activation=leaky
logistic={logistic}
shortcut={shortcut}
"""


@pytest.mark.parametrize("bn,logistic,shortcut", [(0, 0, 1), (1, 1, 0), (0, 2, 1)])
def test_rnn_options_follow_forward_rnn_layer(bn, logistic, shortcut):
    """shortcut (the old state added), logistic=1/2 (self_layer's logistic / loggy), batch_normalize: the C
    loop at inference, transcribed."""
    model = Darknet(RNN_CFG.format(bn=bn, logistic=logistic, shortcut=shortcut), "r.cfg").eval()
    rnn = model.layers[0]
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in rnn.modules():
            if getattr(m, "running_var", None) is not None:
                m.running_mean.uniform_(-0.2, 0.2, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    assert rnn.self_layer.activation == {0: "leaky", 1: "logistic", 2: "loggy"}[logistic]
    state = np.zeros(5, np.float32)
    for _ in range(3):
        x = torch.rand(1, 2, 2, 3, generator=g) * 2 - 1
        with torch.no_grad():
            got = model.forward_all(x)[0].flatten().numpy()
        inp = x.flatten().numpy()
        new = connected_np(rnn.input_layer, inp) + connected_np(rnn.self_layer, state)
        if shortcut:
            new = new + state
        state = new
        np.testing.assert_allclose(got, connected_np(rnn.output_layer, state), rtol=1e-5, atol=1e-6)


def test_layer_tables_print_as_the_reference():
    """make_rnn_layer / make_lstm_layer / make_gru_layer / make_crnn_layer / make_conv_lstm_layer /
    make_history_layer's prints, with the sub-layers' own lines (connected ones after two tabs)."""
    text = """[net]
width=8
height=8
channels=3
[crnn]
size=3
pad=1
output=4
hidden=2
[history]
history_size=2
[conv_lstm]
size=3
pad=1
output=4
[connected]
output=6
[rnn]
hidden=5
output=4
[lstm]
output=3
[gru]
output=2
"""
    table = Darknet(text, "t.cfg").layer_table().splitlines()
    assert table[1] == "   0 CRNN Layer: 8 x 8 x 3 image, 4 filters"
    assert table[2].startswith("conv      2       3 x 3/ 1      8 x   8 x   3 ->    8 x   8 x   2")
    assert table[5] == "   1 HISTORY b = 1, s =  2, steps =  1      8 x   8 x   4 ->    8 x   8 x   8 "
    assert table[6] == "   2 CONV_LSTM Layer: 8 x 8 x 8 image, 4 filters"
    rnn = table.index("   4 RNN Layer: 6 inputs, 4 outputs")
    assert table[rnn + 1] == "\t\tconnected                               6  ->     5"
    lstm = table.index("   5 LSTM Layer: 4 inputs, 3 outputs")
    assert table[lstm + 1] == "\t\tconnected                               4  ->     3"  # uf first, as created
    assert table.index("   6 GRU Layer: 3 inputs, 2 outputs") == lstm + 9
