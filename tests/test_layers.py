"""Layers the OpenCV oracle does not cover, against slow loop references written from
DARKNET_SEMANTICS.md section 1 (index formulas as the reference's C loops state them)."""
import math
import warnings

import numpy as np
import pytest
import torch

from darkcfg.model.network import Darknet


def net(body, w=8, h=8, c=4):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = Darknet(f"[net]\nwidth={w}\nheight={h}\nchannels={c}\n" + body, "t.cfg")
    return m.eval()


def run(m, x):
    with torch.no_grad():
        return [o.numpy() for o in m.forward_all(torch.from_numpy(x))]


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_reorg3d_index_formula():
    s = 2
    x = rand(2, 3, 4, 6)
    out = run(net("[reorg3d]\nstride=2\n", w=6, h=4, c=3), x)[0]
    C = 3
    assert out.shape == (2, 12, 2, 3)
    for b in range(2):
        for k in range(12):
            for j in range(2):
                for i in range(3):
                    want = x[b, k % C, j * s + (k // C) // s, i * s + (k // C) % s]
                    assert out[b, k, j, i] == want


def test_reorg_old_flat_formula():
    s, c, h, w = 2, 8, 4, 6
    x = rand(1, c, h, w)
    out = run(net("[reorg]\nstride=2\n", w=w, h=h, c=c), x)[0]
    assert out.shape == (1, c * 4, h // 2, w // 2)
    flat_in, flat_out = x.reshape(-1), out.reshape(-1)
    cp = c // (s * s)
    for k in range(c):
        for j in range(h):
            for i in range(w):
                off = k // cp
                src = ((k % cp) * h * s + j * s + off // s) * w * s + i * s + off % s
                assert flat_out[k * h * w + j * w + i] == flat_in[src]


def window_ref(x, size, sx, sy, pad, mode):
    b, c, h, w = x.shape
    oh, ow = (h + pad - size) // sy + 1, (w + pad - size) // sx + 1
    out = np.zeros((b, c, oh, ow), np.float32)
    off = -(pad // 2)
    for y in range(oh):
        for xx in range(ow):
            cells = [(y * sy + off + dy, xx * sx + off + dx) for dy in range(size) for dx in range(size)]
            cells = [(r, q) for r, q in cells if 0 <= r < h and 0 <= q < w]
            vals = np.stack([x[:, :, r, q] for r, q in cells], -1)
            out[:, :, y, xx] = vals.max(-1) if mode == "max" else vals.mean(-1)
    return out


@pytest.mark.parametrize("size,sx,sy,pad", [(2, 2, 2, 1), (2, 1, 1, 1), (5, 1, 1, 4), (3, 2, 1, 2), (3, 2, 2, 0)])
def test_maxpool_and_local_avgpool_windows(size, sx, sy, pad):
    x = rand(1, 3, 7, 9)
    body = f"size={size}\nstride_x={sx}\nstride_y={sy}\npadding={pad}\n"
    got = run(net("[maxpool]\n" + body, w=9, h=7, c=3), x)[0]
    np.testing.assert_array_equal(got, window_ref(x, size, sx, sy, pad, "max"))
    got = run(net("[local_avgpool]\n" + body, w=9, h=7, c=3), x)[0]
    np.testing.assert_allclose(got, window_ref(x, size, sx, sy, pad, "avg"), rtol=1e-6, atol=1e-6)


def test_maxpool_depth():
    x = rand(1, 7, 3, 3)
    got = run(net("[maxpool]\nmaxpool_depth=1\nout_channels=3\nstride=1\n", w=3, h=3, c=7), x)[0]
    want = np.stack([x[0, g::3].max(0) for g in range(3)])
    np.testing.assert_array_equal(got[0], want)


def test_upsample_nearest_scale_and_negative_stride_sum():
    x = rand(1, 2, 4, 4)
    up = run(net("[upsample]\nstride=2\nscale=0.5\n", w=4, h=4, c=2), x)[0]
    np.testing.assert_allclose(up[0, :, 3, 5], 0.5 * x[0, :, 1, 2], rtol=1e-6)
    down = run(net("[upsample]\nstride=-2\nscale=2\n", w=4, h=4, c=2), x)[0]
    assert down.shape == (1, 2, 2, 2)
    np.testing.assert_allclose(down[0, :, 1, 0], 2 * x[0, :, 2:4, 0:2].sum((1, 2)), rtol=1e-5)


def test_shortcut_channel_mismatch_adds_flat_prefix():
    # prev has 4 channels, from has 2 (added to the first 2) and 6 (cut to 4)
    body = ("[convolutional]\nfilters=2\nsize=1\nactivation=linear\n[convolutional]\nfilters=6\nsize=1\n"
            "activation=linear\n[convolutional]\nfilters=4\nsize=1\nactivation=linear\n"
            "[shortcut]\nfrom=0,1\nactivation=leaky\n")
    m = net(body)
    o = run(m, rand(1, 4, 8, 8))
    want = o[2].copy()
    want[:, :2] += o[0]
    want += o[1][:, :4]
    want = np.where(want > 0, want, 0.1 * want)
    np.testing.assert_allclose(o[3], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("wt,wn", [("per_feature", "none"), ("per_channel", "relu"), ("per_feature", "softmax"),
                                   ("per_channel", "softmax")])
def test_weighted_shortcut(wt, wn):
    body = ("[convolutional]\nfilters=4\nsize=1\nactivation=linear\n[convolutional]\nfilters=4\nsize=1\n"
            f"activation=linear\n[shortcut]\nfrom=0\nweights_type={wt}\nweights_normalization={wn}\n")
    m = net(body)
    w = torch.linspace(-1, 2, m.layers[2].weight.numel())
    with torch.no_grad():
        m.layers[2].weight.copy_(w)
    o = run(m, rand(1, 4, 8, 8))
    wv = w.numpy().reshape(2, -1)
    if wn == "relu":
        r = np.maximum(wv, 0)
        wv = r / (1e-4 + r.sum(0))
    elif wn == "softmax":
        e = np.exp(wv - wv.max(0))
        wv = e / (1e-4 + e.sum(0))
    w0 = wv[0].reshape(1, -1, 1, 1)
    w1 = wv[1].reshape(1, -1, 1, 1)
    np.testing.assert_allclose(o[2], w0 * o[1] + w1 * o[0], rtol=1e-5, atol=1e-6)
    assert len(m.layers[2].darknet_blobs()) == 1


def test_scale_channels_and_sam():
    body = ("[convolutional]\nfilters=4\nsize=1\nactivation=linear\n[avgpool]\n"
            "[scale_channels]\nfrom=-2\n[convolutional]\nfilters=1\nsize=1\n[scale_channels]\nfrom=0\nscale_wh=1\n"
            "[convolutional]\nfilters=4\nsize=1\nactivation=logistic\n[sam]\nfrom=0\nactivation=swish\n")
    o = run(net(body), rand(1, 4, 8, 8))
    np.testing.assert_allclose(o[2], o[1] * o[0], rtol=1e-6)
    np.testing.assert_allclose(o[4], o[3] * o[0], rtol=1e-6)
    p = o[5] * o[0]
    np.testing.assert_allclose(o[6], p / (1 + np.exp(-p)), rtol=1e-5, atol=1e-6)
    with pytest.raises(Exception, match=r"layer 2 \[scale_channels\]: previous layer outputs"):
        net("[convolutional]\nfilters=4\nsize=1\n[convolutional]\nfilters=4\nsize=1\n[scale_channels]\nfrom=0\n")


def test_conv_dilation_stride_xy_and_groups_match_direct_sum():
    m = net("[convolutional]\nfilters=4\nsize=3\nstride_x=2\nstride_y=1\npad=1\ndilation=2\ngroups=2\n"
            "activation=linear\n", w=9, h=7, c=4)
    conv = m.layers[0]
    x = rand(1, 4, 7, 9)
    got = run(m, x)[0]
    w = conv.conv.weight.detach().numpy()
    bias = conv.conv.bias.detach().numpy()
    # reference: out size (h + 2p - size)/stride + 1 with p=size/2, im2col with pad p*d and dilation d
    oh, ow = (7 + 2 - 3) // 1 + 1, (9 + 2 - 3) // 2 + 1
    assert got.shape == (1, 4, oh, ow)
    xp = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for f in range(4):
        g = f // 2
        for y in range(oh):
            for xx in range(ow):
                acc = bias[f]
                for ci in range(2):
                    for ky in range(3):
                        for kx in range(3):
                            acc += w[f, ci, ky, kx] * xp[0, g * 2 + ci, y + 2 * ky, 2 * xx + 2 * kx]
                assert got[0, f, y, xx] == pytest.approx(acc, rel=1e-4, abs=1e-5)


def test_batchnorm_conv_inference_formula():
    m = net("[convolutional]\nfilters=3\nsize=1\nbatch_normalize=1\nactivation=leaky\n", c=2)
    layer = m.layers[0]
    rng = np.random.default_rng(1)
    with torch.no_grad():
        for t in (layer.bn.bias, layer.bn.weight, layer.bn.running_mean):
            t.copy_(torch.from_numpy(rng.standard_normal(3).astype(np.float32)))
        layer.bn.running_var.copy_(torch.tensor([0.5, 1.0, 2.0]))
    x = rand(1, 2, 8, 8)
    got = run(m, x)[0]
    conv = np.einsum("oc,bchw->bohw", layer.conv.weight.detach().numpy()[:, :, 0, 0], x)
    s, mu, var, b = (t.detach().numpy().reshape(1, 3, 1, 1) for t in
                     (layer.bn.weight, layer.bn.running_mean, layer.bn.running_var, layer.bn.bias))
    y = s * (conv - mu) / np.sqrt(var + 1e-5) + b
    np.testing.assert_allclose(got, np.where(y > 0, y, 0.1 * y), rtol=1e-5, atol=1e-5)


def test_implicit_crop_softmax_connected_dropout():
    m = net("[implicit]\nfilters=3\natoms=2\n", c=2)
    o = run(m, rand(2, 2, 8, 8))[0]
    assert o.shape == (2, 3, 2, 1)
    np.testing.assert_array_equal(o[1].reshape(-1), m.layers[0].weight.detach().numpy())
    x = rand(1, 2, 8, 8)
    crop = run(net("[crop]\ncrop_height=4\ncrop_width=6\n", c=2), x)[0]
    np.testing.assert_allclose(crop, x[:, :, 2:6, 1:7] * 2 - 1)
    xs = rand(1, 3, 1, 2)
    sm = run(net("[softmax]\ngroups=2\ntemperature=2\n", w=2, h=1, c=3), xs)
    v = sm[0].reshape(2, 3)
    np.testing.assert_allclose(v.sum(1), [1, 1], rtol=1e-6)
    # softmax_cpu: each of the 2 groups is a contiguous third of the flat input, exp(x/T) / sum, T = 2
    e = np.exp(xs.reshape(2, 3).astype(np.float64) / 2)
    np.testing.assert_allclose(v, e / e.sum(1, keepdims=True), rtol=1e-6)
    m = net("[connected]\noutput=5\nactivation=linear\n[dropout]\nprobability=0.5\n", w=2, h=2, c=3)
    x = rand(1, 3, 2, 2)
    o = run(m, x)
    want = x.reshape(1, -1) @ m.layers[0].weight.detach().numpy().T + m.layers[0].bias.detach().numpy()
    np.testing.assert_allclose(o[0].reshape(1, 5), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(o[1], o[0])  # dropout is the identity at inference


def test_yolo_output_is_l_output():
    """Logistic on x, y, obj, classes (not w, h); scale_x_y; new_coords leaves everything to the conv."""
    body = ("[convolutional]\nfilters=14\nsize=1\nactivation=linear\n"
            "[yolo]\nmask=0,1\nanchors=1,2,3,4,5,6\nclasses=2\nnum=3\nscale_x_y=1.2\n")
    o = run(net(body), rand(1, 4, 8, 8))
    raw, out = o[0].reshape(2, 7, 8, 8), o[1].reshape(2, 7, 8, 8)
    sg = 1 / (1 + np.exp(-raw))
    np.testing.assert_allclose(out[:, 0:2], 1.2 * sg[:, 0:2] - 0.1, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out[:, 2:4], raw[:, 2:4])
    np.testing.assert_allclose(out[:, 4:], sg[:, 4:], rtol=1e-5, atol=1e-7)
    o = run(net(body.replace("scale_x_y=1.2", "new_coords=1")), rand(1, 4, 8, 8))
    np.testing.assert_array_equal(o[1], o[0])


def test_region_output_is_flattened_like_the_reference():
    body = "[convolutional]\nfilters=16\nsize=1\nactivation=linear\n[region]\nnum=2\nclasses=3\ncoords=4\nsoftmax=1\n"
    o = run(net(body, w=3, h=2), rand(1, 4, 2, 3))
    raw, out = o[0][0], o[1][0].reshape(-1)
    assert o[1].shape == (1, 2, 3, 16)
    for cell in range(6):
        for a in range(2):
            base = (cell * 2 + a) * 8  # reference flatten: cell-major, then anchor, then entry
            r = raw.reshape(16, 6)[a * 8:(a + 1) * 8, cell]
            np.testing.assert_allclose(out[base:base + 4], r[:4])
            assert out[base + 4] == pytest.approx(1 / (1 + math.exp(-r[4])), rel=1e-6)
            e = np.exp(r[5:] - r[5:].max())
            np.testing.assert_allclose(out[base + 5: base + 8], e / e.sum(), rtol=1e-5)


def test_gaussian_yolo_activations():
    body = "[convolutional]\nfilters=11\nsize=1\nactivation=linear\n[Gaussian_yolo]\nmask=0\nnum=1\nclasses=2\n"
    o = run(net(body), rand(1, 4, 8, 8))
    raw, out = o[0][0], o[1][0]
    sg = 1 / (1 + np.exp(-raw))
    for e in range(11):
        np.testing.assert_allclose(out[e], sg[e] if e in (0, 1, 2, 3, 5, 7, 8, 9, 10) else raw[e], rtol=1e-5)


def test_antialiasing_conv_blurs_with_the_original_stride():
    m = net("[convolutional]\nfilters=2\nsize=1\nstride=2\nantialiasing=1\nactivation=linear\n", w=6, h=6, c=1)
    conv = m.layers[0]
    assert conv.out_shape == (2, 3, 3)  # host conv at stride 1 (6x6), blur 3x3 pad 1 stride 2
    x = rand(1, 1, 6, 6)
    got = run(m, x)[0]
    w = conv.conv.weight.detach().numpy()[:, 0, 0, 0]
    b = conv.conv.bias.detach().numpy()
    host = w.reshape(2, 1, 1) * x[0] + b.reshape(2, 1, 1)  # (2, 6, 6)
    k = np.outer([1, 2, 1], [1, 2, 1]) / 16
    padded = np.pad(host, ((0, 0), (1, 1), (1, 1)))
    for f in range(2):
        for y in range(3):
            for xx in range(3):
                want = (padded[f, 2 * y: 2 * y + 3, 2 * xx: 2 * xx + 3] * k).sum()
                assert got[0, f, y, xx] == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_share_index_uses_the_other_layers_weights():
    m = net("[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=linear\n"
            "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=linear\nshare_index=0\n")
    assert m.layers[1].darknet_blobs() == []
    x = rand(1, 4, 8, 8)
    o = run(m, x)
    with torch.no_grad():
        first = m.layers[0].conv
        ref = torch.nn.functional.conv2d(torch.from_numpy(o[0]), first.weight, first.bias, padding=1).numpy()
    np.testing.assert_allclose(o[1], ref, rtol=1e-6)
