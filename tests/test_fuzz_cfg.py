"""Property: random and mutated cfg text gives a network that runs, or a CfgError, never another exception;
and the fuzzing is not vacuous: the unmutated cfg builds and runs, and a share of mutants build and run."""
import random
import warnings

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from darkcfg import CfgError
from darkcfg.model.network import Darknet

# a small cfg in the style of yolov3-tiny (written for this test), at a small input size
BASE = """[net]
width=32
height=32
channels=3
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
filters=16
size=3
pad=1
activation=mish
[route]
layers=-1,-2
[convolutional]
filters=21
size=1
activation=linear
[yolo]
mask=0,1,2
anchors=10,14,23,27,37,58
classes=2
num=3
[route]
layers=-4
[upsample]
stride=2
[shortcut]
from=0
activation=linear
"""
LINES = BASE.splitlines()
TOKENS = ["-1", "0", "3", "-7", "abc", "", "1,2", "1e3", "2.5", "-1,-3", "99", "#", "=", "[", "]", "leaky", "x=",
          "[route]", "[yolo]", "[conv]", "[net]", "[bogus]", "layers=9", "from=-9", "size=0", "stride=-2",
          "groups=3", "mask=7", "filters=1", "num=0", "classes=-1", "[sam]", "[reorg]", "[scale_channels]",
          "[maxpool]", "[avgpool]", "[connected]", "[Gaussian_yolo]", "[region]", "[implicit]", "[crop]"]


def check(text) -> bool:
    """True when the text builds a network (which must then run a forward pass), False for a CfgError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = Darknet(text, "fuzz.cfg")
        except CfgError as e:
            assert "\n" not in str(e) and str(e).startswith("fuzz.cfg")
            return False
    if model.input_shape.size > 1 << 16:  # a mutated [net] size: building is what was under test
        return True
    with torch.no_grad():
        model.eval().forward_all(torch.rand(1, *model.input_shape))
    return True


def mutate(lines, mutations):
    lines = list(lines)
    for kind, pos, tok in mutations:
        pos %= max(len(lines), 1)
        if kind == "delete" and lines:
            del lines[pos]
        elif kind == "replace" and lines:
            lines[pos] = tok
        elif kind == "insert":
            lines.insert(pos, tok)
        elif kind == "value" and lines and "=" in lines[pos]:
            lines[pos] = lines[pos].split("=")[0] + "=" + tok
    return "\n".join(lines)


def test_the_unmutated_cfg_builds_and_runs():
    assert check(BASE)


def test_a_share_of_single_mutants_builds_and_runs():
    """200 seeded one-edit mutants: the ones that build must run, and enough build that running is tested."""
    rng = random.Random(0)
    built = sum(check(mutate(LINES, [(rng.choice(["delete", "replace", "insert", "value"]),
                                      rng.randrange(len(LINES)), rng.choice(TOKENS))])) for _ in range(200))
    assert built >= 40, built


mutation = st.tuples(st.sampled_from(["delete", "replace", "insert", "value"]),
                     st.integers(0, len(LINES) - 1), st.sampled_from(TOKENS))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutation, min_size=1, max_size=6))
def test_mutated_cfgs_give_only_cfg_errors(mutations):
    check(mutate(LINES, mutations))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("[]=#;,-.0123456789 \n\tabcnetwyolorupsh_")), max_size=200))
def test_random_text_gives_only_cfg_errors(text):
    check(text)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=30))
def test_random_token_lines_after_a_net_section(tokens):
    check("[net]\nwidth=16\nheight=16\nchannels=3\n" + "\n".join(tokens))


# a small sequence cfg (written for this test) with every recurrent type and a YOLOv1 head
REC_BASE = """[net]
width=16
height=16
channels=3
time_steps=1
[convolutional]
filters=4
size=3
stride=2
pad=1
activation=leaky
[crnn]
size=3
pad=1
output=4
hidden=3
activation=leaky
[conv_lstm]
size=3
pad=1
output=4
peephole=1
[history]
history_size=2
[connected]
output=12
activation=leaky
[rnn]
hidden=8
output=8
[lstm]
output=8
[gru]
output=6
[connected]
output=28
activation=linear
[detection]
classes=2
coords=4
side=2
num=1
softmax=1
"""
REC_LINES = REC_BASE.splitlines()
REC_TOKENS = ["[rnn]", "[lstm]", "[gru]", "[crnn]", "[conv_lstm]", "[history]", "[detection]", "[local]",
              "hidden=0", "output=-1", "output=3", "peephole=1", "bottleneck=1", "shortcut=1", "history_size=0",
              "time_steps=3", "side=0", "num=5", "coords=2", "size=2", "stride=2", "pad=0", "groups=2", "xnor=1",
              "state_constrain=-1", "lstm_activation=bogus", "logistic=2", "dilation=2", "-1", "0", "abc", ""]


def test_the_unmutated_sequence_cfg_builds_and_runs():
    assert check(REC_BASE)


rec_mutation = st.tuples(st.sampled_from(["delete", "replace", "insert", "value"]),
                         st.integers(0, len(REC_LINES) - 1), st.sampled_from(REC_TOKENS + TOKENS))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rec_mutation, min_size=1, max_size=4))
def test_mutated_sequence_cfgs_give_only_cfg_errors(mutations):
    text = mutate(REC_LINES, mutations)
    if check(text):  # a second forward runs on the state the first left
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = Darknet(text, "fuzz.cfg")
        if model.input_shape.size <= 1 << 16:
            with torch.no_grad():
                x = torch.rand(1, *model.input_shape)
                model.eval().forward_all(x)
                model.forward_all(x)
