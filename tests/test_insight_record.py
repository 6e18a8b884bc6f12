"""`gputop record --run` on unmodified scripts (tests/insight_scripts), through the real CLI:
detected steps with their data waits nested inside on the timeline, the script's output kept in
the trace and echoed (or not, with --quiet), its processes recorded, and `gputop report` (text and
--json) giving steps/s, step time p50/p95, the data-wait share and the verdict."""

from __future__ import annotations

import json
import pathlib

import pytest

import traceval
from gputop import trace
from gputop.trace import steps_tid
from gputop.trace.track import output_tid
from helpers import gputop_h100 as gputop

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("insight_record")]  # its module fixture runs once, on one worker

SCRIPTS = pathlib.Path(__file__).resolve().parent / "insight_scripts"


@pytest.fixture(scope="module")
def slow_loader(tmp_path_factory) -> tuple[pathlib.Path, object]:
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("rec") / "t.json"
    done = gputop("record", "--out", str(out), "--interval", "0.2", "--run", str(SCRIPTS / "slow_loader.py"), timeout=240)
    assert done.returncode == 0, done.stderr
    return out, done


def test_detected_steps_and_their_data_waits_are_slices_on_the_timeline(slow_loader):
    out, done = slow_loader
    text = out.read_text()
    traceval.assert_valid(text, strict=True)
    loaded = trace.load(out)
    pid = loaded.workload["pid"]
    steps = [e for e in loaded.events if e.get("name") == "step" and e.get("ph") == "X"]
    waits = [e for e in loaded.events if e.get("name") == "data_wait" and e.get("ph") == "X"]
    assert [e["args"]["step"] for e in steps] == list(range(1, 21))
    assert all(e["args"]["source"] == "auto" and e["args"]["samples"] == 4 for e in steps)
    assert all(e["args"]["data_wait_s"] > 0 for e in steps)
    assert len(waits) == 20 and all(e["pid"] == pid and e["tid"] == steps_tid(pid) for e in waits)
    for step, wait in zip(steps, waits):  # each inside its step
        assert step["ts"] <= wait["ts"] and wait["ts"] + wait["dur"] <= step["ts"] + step["dur"] + 1e-3
    back = loaded.workload_steps()
    assert len(back) == 20 and all(s.source == "auto" and s.data_wait_s for s in back)
    assert "workload slow_loader.py finished (20 steps)" in done.stderr


def test_the_scripts_output_is_kept_in_the_trace_and_echoed(slow_loader):
    out, done = slow_loader
    assert "one epoch of 20 batches" in done.stdout  # echoed to the terminal as it came
    loaded = trace.load(out)
    pid = loaded.workload["pid"]
    lines = [e for e in loaded.events if e.get("pid") == pid and e.get("name") in ("stdout", "stderr")]
    assert any(e["args"]["line"] == "one epoch of 20 batches" and e["name"] == "stdout" for e in lines)
    assert all(e["tid"] == output_tid(pid) and e["ph"] == "i" for e in lines)
    jobs = [e for e in loaded.events if e.get("pid") == pid and e.get("name") == "job"]
    assert jobs and jobs[0]["args"]["processes"][0]["role"] == "main"


def test_report_gives_the_rates_the_data_wait_and_the_verdict(slow_loader):
    out, _ = slow_loader
    done = gputop("report", str(out), "--json")
    assert done.returncode == 0, done.stderr
    w = json.loads(done.stdout)["workload"]
    assert w["steps"] == 20 and w["steps_source"] == "auto"
    assert 0 < w["data_wait_share"] <= 1 and w["steps_per_s"] > 0
    assert w["step_time_s_p50"] <= w["step_time_s_p95"]
    assert w["verdict"]["kind"] == "input_bound" and "DataLoader" in w["verdict"]["evidence"]
    assert set(w["verdict"]) == {"kind", "evidence", "suggestion"}
    assert w["output_tail"][-1] == "one epoch of 20 batches"
    assert w["job"]["workers"] == 2  # the DataLoader's two worker processes
    text = gputop("report", str(out), "--no-chart").stdout
    assert "verdict     input-bound: " in text and "detected by gputop's hooks" in text
    assert "    one epoch of 20 batches" in text


def test_quiet_keeps_the_output_out_of_the_terminal_but_in_the_trace(tmp_path):
    out = tmp_path / "t.json"
    done = gputop("record", "--out", str(out), "--interval", "0.2", "--quiet", "--run", str(SCRIPTS / "no_torch.py"), "--", "--x")
    assert done.returncode == 1  # its own exit code 3 is a failure
    assert "argv" not in done.stdout and "to stderr" not in done.stderr.splitlines()[:-1]
    loaded = trace.load(out)
    lines = [e["args"]["line"] for e in loaded.events if e.get("name") in ("stdout", "stderr")]
    assert "argv ['--x'] main True" in lines and "to stderr" in lines
    w = json.loads(gputop("report", str(out), "--json").stdout)["workload"]
    assert w["steps"] == 0 and w["steps_source"] is None and w["verdict"]["kind"] == "unknown"
    assert w["data_wait_share"] is None and w["steps_per_s"] is None
    assert w["job"]["rss_bytes_max"] > 0  # what the job used, steps or none
