"""Detected steps on the trace without a child: drawn on whole microseconds so touching steps
never overlap in a viewer's doubles, their data waits nested and clipped inside them, samples
left out where unknown, and read back the same."""

from __future__ import annotations

import pytest

import traceval
from gputop import trace
from gputop.model import WorkloadMark, WorkloadStep
from helpers import T0, write_with_workload

pytestmark = pytest.mark.unit


def auto(k: int, end: int, wall_ns: int, waits=()) -> WorkloadStep:
    return WorkloadStep(
        step=k,
        samples=None,
        loss=None,
        wall_s=wall_ns / 1e9,
        ts_ns=end,
        source="auto",
        data_wait_s=sum(d for _, d in waits) / 1e9,
        waits=tuple(waits),
    )


def test_touching_steps_and_their_waits_are_valid_nested_slices(tmp_path):
    # step 2 begins exactly where step 1 ended, at a time with sub-microsecond digits
    e1 = T0 + 10_000_123
    e2 = e1 + 2_000_777
    items = [
        auto(1, e1, 10_000_000, [(e1 - 9_000_000, 4_000_000)]),
        # a wait that began before its step as drawn: clipped to it
        auto(2, e2, 2_000_777, [(e1 - 500, 1_000_000)]),
        WorkloadMark("output", e2, name="stdout", args={"line": "epoch 1"}),
    ]
    text = write_with_workload(tmp_path / "t.json", items).read_text()
    traceval.assert_valid(text, strict=True)
    loaded = trace.load(tmp_path / "t.json")
    slices = [e for e in loaded.events if e.get("ph") == "X"]
    assert [e["name"] for e in slices] == ["step", "data_wait", "step", "data_wait"]
    s1, w1, s2, w2 = slices
    assert all(float(e["ts"]).is_integer() and float(e["dur"]).is_integer() for e in slices)
    assert s1["ts"] + s1["dur"] <= s2["ts"] and s2["ts"] <= w2["ts"]  # clipped into step 2
    assert s1["ts"] <= w1["ts"] and w1["ts"] + w1["dur"] <= s1["ts"] + s1["dur"]
    assert "samples" not in s1["args"] and s1["args"]["source"] == "auto"
    back = loaded.workload_steps()
    assert [(s.step, s.samples, s.source) for s in back] == [(1, None, "auto"), (2, None, "auto")]
    assert back[0].wall_s == 0.01 and back[0].data_wait_s == 0.004  # args keep the exact figures
    out = [e for e in loaded.events if e.get("name") == "stdout"]
    assert out and out[0]["args"] == {"line": "epoch 1"}
