"""scripts/bench.py's verdicts: ratios taken within each round of new processes (the same minutes on the host)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _bench():  # noqa: ANN202 - the script as a module
    spec = importlib.util.spec_from_file_location("bench", REPO / "scripts" / "bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_targets_compare_the_fastest_of_each_side_within_each_round() -> None:
    bench = _bench()
    rounds = [  # round 2's host is slow for everyone: a ratio of pooled medians would mix the two
        {"fast": 40.0, "openvino": 30.0, "openvino-int8": 8.0, "openvino-default": 9.0, "ov-fp32": 32.0,
         "ov-default": 10.0, "opencv": 50.0},
        {"fast": 80.0, "openvino": 66.0, "openvino-int8": 18.0, "openvino-default": 15.0, "ov-fp32": 60.0,
         "ov-default": 20.0, "opencv": 100.0},
        {"fast": 41.0, "openvino": 31.0, "openvino-int8": 8.5, "openvino-default": 9.5, "ov-fp32": 31.0,
         "ov-default": 10.0, "opencv": 52.0},
    ]
    res = {"rounds": {1: rounds}, 1: {k: sorted(r[k] for r in rounds)[1] for k in rounds[0]}}
    exact, reduced = bench.target_lines("m", res, [1])
    assert exact == ("m batch 1: darkcfg's fastest exact mode / ov-fp32: 1.00 (rounds: 0.94, 1.10, 1.00; "
                     "fastest overall: openvino)")
    assert reduced == ("m batch 1: darkcfg's fastest reduced-precision mode / ov-default: 0.80 (rounds: 0.80, 0.75, "
                       "0.85; fastest overall: openvino-int8)")
    only_ours = {"rounds": {1: [{"fast": 1.0, "opencv": 2.0}]}, 1: {"fast": 1.0, "opencv": 2.0}}
    assert bench.target_lines("m", only_ours, [1]) == []  # no OpenVINO column: no verdict
