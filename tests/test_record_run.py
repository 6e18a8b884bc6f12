"""`gputop record --run`: the workload's steps, phases, marks and counters in the trace, valid for
the viewers (traceval), read back, summarized by `gputop report`; and how a recording ends."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import pytest

import traceval
from gputop import trace
from gputop.trace import TraceWriter, phase_tid
from gputop.workload import WorkloadMark, WorkloadStep
from test_trace import make_samples

TESTS = pathlib.Path(__file__).resolve().parent
TINY_MLP = ["--device", "cpu", "--hidden", "32", "--layers", "1", "--batch-size", "4", "--steps", "5"]


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["GPUTOP_FAKE_NVML"] = "H100_SXM"
    out["PYTHONPATH"] = os.pathsep.join([str(TESTS / "sitecustom"), str(TESTS), out.get("PYTHONPATH", "")])
    return out


def gputop(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gputop", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env())


def test_record_run_writes_the_steps_on_the_workloads_pid(tmp_path):
    out = tmp_path / "t.json"
    done = gputop("record", "--out", str(out), "--interval", "0.1", "--run", "mlp", "--", *TINY_MLP)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith("gputop record: workload mlp finished (5 steps)")
    text = out.read_text()
    traceval.assert_valid(text, strict=True)
    loaded = trace.load(out)
    w = loaded.workload
    assert w["name"] == "mlp" and w["argv"][-len(TINY_MLP):] == TINY_MLP
    assert loaded.settings["run"] == w["argv"]
    steps = loaded.workload_steps()
    assert [s.step for s in steps] == [1, 2, 3, 4, 5] and all(s.samples == 4 for s in steps)
    assert all(s.wall_s > 0 and s.loss is not None for s in steps)
    assert all(a.ts_ns <= b.ts_ns - b.wall_s * 1e9 + 1 for a, b in zip(steps, steps[1:]))  # in order
    events = [e for e in loaded.events if e.get("pid") == w["pid"]]
    names = {(e["ph"], e["name"]) for e in events}
    assert {("M", "process_name"), ("M", "thread_name"), ("i", "start"), ("i", "end"),
            ("B", "setup"), ("E", "setup"), ("C", "loss"), ("C", "samples_per_s")} <= names
    assert {e["tid"] for e in events if e["ph"] in "BE"} == {phase_tid(w["pid"])}
    start = loaded.workload_mark("start")
    assert start["device"] == "cpu" and start["flops_per_step"] > 0 and start["batch_size"] == 4
    assert loaded.workload_mark("end") == {"status": "ok"}
    assert len(loaded.samples()) >= 2  # the devices were recorded alongside

    report = gputop("report", str(out), "--json")
    assert report.returncode == 0, report.stderr
    summary = json.loads(report.stdout)["workload"]
    assert summary["steps"] == 5 and summary["steps_measured"] == 4 and summary["end_status"] == "ok"
    assert summary["samples_per_s_median"] > 0 and summary["tflops_median"] > 0
    assert summary["mfu_pct_median"] > 0 and summary["device"] == "cpu"
    median_rate = sorted(4 / s.wall_s for s in steps[1:])
    assert summary["samples_per_s_median"] == pytest.approx((median_rate[1] + median_rate[2]) / 2)
    text_report = gputop("report", str(out), "--no-chart")
    assert "Workload mlp (pid" in text_report.stdout and "5 of 5 steps, finished" in text_report.stdout
    assert "medians over 4 steps (step 1 is warm-up, left out)" in text_report.stdout


def test_a_trace_without_a_workload_reports_none(tmp_path):
    path = tmp_path / "plain.json"
    writer = TraceWriter.create(str(path))
    for s in make_samples(3):
        writer.write_sample(s)
    writer.close()
    loaded = trace.load(path)
    assert loaded.workload is None and loaded.workload_steps() == []
    from gputop import report
    assert report.summarize(loaded, loaded.samples())["workload"] is None


def test_the_writer_keeps_steps_nested_and_skips_what_it_cannot_place(tmp_path):
    """Rounding between the child's clocks may make a step start a hair before the previous one
    ended; it is trimmed to start there, so slices on the steps thread always nest."""
    samples = make_samples(2)
    t = samples[0].ts_ns
    path = tmp_path / "w.json"
    writer = TraceWriter.create(str(path))
    writer.write_workload([WorkloadStep(1, 4, None, 0.001, t)])  # before the first sample: dropped
    writer.set_workload(4242, "fake", ["python", "fake.py"])
    writer.write_sample(samples[0])
    with pytest.raises(ValueError):
        writer.set_workload(4243, "late")
    items = [
        WorkloadMark("phase", t + 1_000, name="setup", ph="B"),
        WorkloadMark("phase", t + 2_000, name="setup", ph="E"),
        WorkloadMark("start", t + 3_000, name="fake", args={"device": "cpu", "bad": float("nan")}),
        WorkloadStep(1, 4, 2.5, 0.000010, t + 20_000),   # 10 us, ends at +20 us
        WorkloadStep(2, 4, None, 0.000015, t + 30_000),  # would start at +15 us: trimmed to +20
        WorkloadStep(3, 4, 1.5, 0.000005, t + 25_000),   # ends before step 2 did: left out
        WorkloadMark("end", t + 40_000, name="fake", args={"status": "ok"}),
    ]
    writer.write_workload(items)
    writer.write_sample(samples[1])
    writer.close()
    traceval.assert_valid(path.read_text(), strict=True)
    loaded = trace.load(path)
    steps = loaded.workload_steps()
    assert [(s.step, s.ts_ns - t, round(s.wall_s * 1e9)) for s in steps] == [(1, 20_000, 10_000),
                                                                             (2, 30_000, 10_000)]
    assert steps[0].loss == 2.5 and steps[1].loss is None
    assert loaded.workload_mark("start") == {"device": "cpu"}  # NaN is not JSON: left out
    assert writer.workload_steps == 2


def test_a_bad_target_is_one_line_and_no_file(tmp_path):
    out = tmp_path / "t.json"
    done = gputop("record", "--out", str(out), "--run", str(tmp_path / "nope.py"), timeout=60)
    assert done.returncode == 2 and not out.exists()
    assert done.stderr == f"gputop record: error: no such file: {tmp_path / 'nope.py'}\n"


def test_arguments_after_dashes_need_a_workload(tmp_path):
    done = gputop("record", "--out", str(tmp_path / "t.json"), "--", "--steps", "3", timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "with --run" in done.stderr
    assert not (tmp_path / "t.json").exists()


def test_a_failing_workload_exits_1_and_the_trace_still_loads(tmp_path):
    job = tmp_path / "job.py"
    job.write_text("import sys\nprint('loading', file=sys.stderr)\nraise SystemExit('no data found')\n")
    out = tmp_path / "t.json"
    done = gputop("record", "--out", str(out), "--interval", "0.1", "--run", str(job))
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == "gputop record: workload job.py failed (no steps reported): no data found"
    traceval.assert_valid(out.read_text(), strict=True)
    loaded = trace.load(out)
    assert loaded.workload["name"] == "job.py" and loaded.workload_steps() == []


def test_duration_stops_the_workload_and_its_group(tmp_path):
    job = tmp_path / "job.py"
    pidfile = tmp_path / "pid"
    job.write_text(textwrap.dedent(f"""\
        import os, time
        open({str(pidfile)!r}, "w").write(str(os.getpgid(0)))
        time.sleep(120)
    """))
    out = tmp_path / "t.json"
    t0 = time.monotonic()
    done = gputop("record", "--out", str(out), "--interval", "0.1", "--duration", "1", "--run", str(job))
    assert time.monotonic() - t0 < 60
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == "gputop record: workload job.py stopped by gputop (no steps reported)"
    with pytest.raises(ProcessLookupError):
        os.killpg(int(pidfile.read_text()), 0)
    traceval.assert_valid(out.read_text(), strict=True)
