"""cfg reading quirks of the reference (parser.c, option_list.c, utils.c:strip) and strict errors."""
import re
import warnings

import pytest

from darkcfg import CfgError, CfgWarning
from darkcfg.model.cfg import atof, atoi, parse_cfg_text
from darkcfg.model.network import Darknet

NET = "[net]\nwidth=32\nheight=32\nchannels=3\n"


def build(text, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = Darknet(NET + text, "t.cfg", **kw)
    return model, [str(w.message) for w in caught if issubclass(w.category, CfgWarning)]


def test_strip_removes_all_whitespace_and_comments_are_skipped():
    secs = parse_cfg_text("[net]\n  wid th = 3 2 \r\n# c\n; c\n\n[route]\nlayers = -1, 61\n", "f")
    assert secs[0].find("width").value == "32"
    assert secs[1].find("layers").value == "-1,61"


def test_section_header_with_trailing_comment_is_an_unknown_type():
    # the reference reads the type as '[convolutional]#x' and fails later; here it is an error at once
    with pytest.raises(CfgError, match=r"t.cfg:5: unparsable section header '\[convolutional\] #x'"):
        build("[convolutional] #x\nfilters=4\n")


def test_first_match_wins_and_numbers_read_like_atoi_atof():
    model, warns = build("[convolutional]\nfilters=4 # four\nfilters=8\nsize=3x\nstride=1\npad=1\n")
    conv = model.layers[0]
    assert conv.filters == 4  # first match; '#four' ignored silently as an inline comment
    assert conv.size == 3  # atoi('3x') == 3, with a warning about the junk
    assert any("ignoring 'x'" in w and "t.cfg:8" in w for w in warns)
    assert not any("filters" in w and "unused" in w for w in warns)  # the second one is shadowed, not unused
    assert atoi("-12abc") == -12 and atoi("abc") is None
    assert atof("1e-3,") == 1e-3 and atof(".5") == 0.5 and atof("x") is None


def test_defaults_pad_means_half_size_maxpool_padding_and_logistic():
    model, _ = build("[convolutional]\nfilters=2\nsize=5\npad=1\npadding=7\n[maxpool]\nsize=3\nstride=2\n")
    conv, pool = model.layers
    assert conv.padding == 2  # pad=1 overrides padding: size/2
    assert conv.activation == "logistic"  # the reference's default activation for conv
    assert pool.padding == 2  # maxpool padding defaults to size-1
    assert pool.out_shape == (2, 16, 16)  # (32 + 2 - 3)/2 + 1
    model, _ = build("[maxpool]\nstride=2\n")
    assert model.layers[0].size == 2  # size defaults to stride


def test_relative_and_absolute_indices():
    model, _ = build("[convolutional]\nfilters=2\n[convolutional]\nfilters=3\n[route]\nlayers=-1,0\n"
                     "[shortcut]\nfrom=0\n")
    assert model.layers[2].sources == (1, 0)
    assert model.layers[2].out_shape.c == 5
    assert model.layers[3].sources == (0,)


@pytest.mark.parametrize("body,pattern", [
    ("[bogus]\n", r"t.cfg:5: layer 0: unknown section type \[bogus\]; expected one of"),
    ("[convolutional]\nfilters\n", r"t.cfg:6: unparsable line 'filters' \(expected key=value\)"),
    ("[convolutional]\nfilters=\n", r"t.cfg:6: unparsable line"),
    ("[convolutional]\nfilters=abc\n", r"t.cfg:6: layer 0 \[convolutional\]: option 'filters': expected an integer"),
    ("[convolutional]\nfilters=2\n[route]\nlayers=-3\n",
     r"t.cfg:8: layer 1 \[route\]: layers=-3 refers to layer -2; expected a layer index in 0..0"),
    ("[convolutional]\nfilters=2\n[shortcut]\nfrom=5\n", r"layer 1 \[shortcut\]: from=5 refers to layer 5"),
    ("[convolutional]\nfilters=2\n[route]\nlayers=1\n", r"layers=1 refers to layer 1"),
    ("[convolutional]\nfilters=0\n", r"layer 0 \[convolutional\]: filters=0: expected a positive value"),
    ("[convolutional]\nsize=-3\n", r"size=-3: expected a positive value"),
    ("[maxpool]\nsize=64\npadding=0\n", r"size=64 is larger than the padded input"),
    ("[convolutional]\nfilters=20\n[yolo]\nclasses=2\nmask=0,1\nnum=3\n",
     r"layer 1 \[yolo\]: the layer before has filters=20, expected 14 = \(5\+classes=2\) x 2 anchors in mask"),
    ("[convolutional]\nfilters=20\n[region]\nclasses=2\nnum=3\n", r"expected 21 = num=3"),
    ("[convolutional]\nfilters=2\n[convolutional]\nfilters=3\nsize=1\n[maxpool]\nstride=2\n[route]\nlayers=0,2\n",
     r"layer 3 \[route\]: input layers have different sizes"),
    ("[convolutional]\nfilters=3\ngroups=2\n", r"groups=2 must divide"),
])
def test_bad_cfgs_give_one_line_errors_with_place(body, pattern):
    with pytest.raises(CfgError, match=pattern) as info:
        build(body)
    assert "\n" not in str(info.value)


def test_structure_errors():
    with pytest.raises(CfgError, match="first section must be"):
        Darknet("[convolutional]\nfilters=1\n")
    with pytest.raises(CfgError, match="before the first"):
        Darknet("width=3\n[net]\n")
    with pytest.raises(CfgError, match="no sections"):
        Darknet("# nothing\n")
    with pytest.raises(CfgError, match="no layers"):
        Darknet(NET)
    with pytest.raises(CfgError, match="no input size"):
        Darknet("[net]\nbatch=1\n[convolutional]\n")
    with pytest.raises(CfgError, match="policy=steps needs"):
        Darknet(NET + "policy=steps\n[convolutional]\n")


def test_unused_options_warn_with_file_and_line():
    _, warns = build("[convolutional]\nfilters=2\nfiltres=3\n[maxpool]\nsize=2\nstride=2\nlayers=5\n")
    assert any(re.search(r"t.cfg:7: layer 0 \[convolutional\]: unused option 'filtres=3'", w) for w in warns)
    assert any("t.cfg:11: layer 1 [maxpool]: unused option 'layers=5'" in w for w in warns)
    _, warns = build("[convolutional]\nfilters=2\n", )
    assert warns == []


def test_unknown_activation_becomes_relu_with_a_warning():
    model, warns = build("[convolutional]\nfilters=2\nactivation=leakyy\n")
    assert model.layers[0].activation == "relu"
    assert any("t.cfg:7" in w and "unknown activation 'leakyy'" in w for w in warns)


def test_every_layer_option_common_keys_are_read():
    model, warns = build("[convolutional]\nfilters=2\nstopbackward=1\nlearning_rate=0.5\ndontload=1\n"
                         "train_only_bn=1\nclip=2\nonlyforward=0\ndont_update=0\nburnin_update=0\n")
    assert warns == []
    conv = model.layers[0]
    assert conv.stopbackward == 1 and conv.learning_rate_scale == 0.5 and conv.dontload


def test_net_keys_defaults_and_mixup_codes():
    model, warns = build("[convolutional]\n")
    n = model.net
    assert (n.batch, n.subdivisions, n.learning_rate, n.momentum, n.decay, n.flip, n.policy) == (
        1, 1, 0.001, 0.9, 0.0001, 1, "constant")
    m2 = Darknet("[net]\nwidth=32\nheight=32\nchannels=3\nbatch=64\nsubdivisions=16\nmosaic=1\ncutmix=1\n"
                 "policy=steps\nsteps=400,450\nscales=.1,.1\n[convolutional]\n")
    assert m2.net.mini_batch == 4 and m2.net.mixup == 4 and m2.net.steps == [400, 450]


def test_size_override_does_not_touch_the_text():
    text = "[convolutional]\nfilters=2\nsize=3\nstride=2\npad=1\n"
    model, _ = build(text, size=(64, 48))
    assert model.layers[0].out_shape == (2, 24, 32)
    assert "width=32" in model.cfg_text
