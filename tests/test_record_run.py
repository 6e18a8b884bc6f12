"""`gputop record --run`: the workload's steps, phases, marks and counters in the trace, valid for
the viewers (traceval), read back, summarized by `gputop report`; and how a recording ends."""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import textwrap
import time

import pytest

import traceval
from gputop import trace
from gputop.environment import Environment
from gputop.trace import TraceWriter, phase_tid
from gputop.workload import WorkloadMark, WorkloadStep
from helpers import T0, make_samples, write_with_workload
from helpers import gputop_h100 as gputop

TESTS = pathlib.Path(__file__).resolve().parent
TINY_MLP = ["--device", "cpu", "--hidden", "32", "--layers", "1", "--batch-size", "4", "--steps", "5"]


@pytest.mark.e2e
def test_record_run_writes_the_steps_on_the_workloads_pid(tmp_path):
    out = tmp_path / "t.json"
    done = gputop("record", "--out", str(out), "--interval", "0.1", "--run", "mlp", "--", *TINY_MLP)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith("gputop record: workload mlp finished (5 steps)")
    text = out.read_text()
    traceval.assert_valid(text, strict=True)
    loaded = trace.load(out)
    w = loaded.workload
    assert w["name"] == "mlp" and w["argv"][-len(TINY_MLP) :] == TINY_MLP
    assert loaded.settings["run"] == w["argv"]
    steps = loaded.workload_steps()
    assert [s.step for s in steps] == [1, 2, 3, 4, 5] and all(s.samples == 4 for s in steps)
    assert all(s.wall_s > 0 and s.loss is not None for s in steps)
    assert all(a.ts_ns <= b.ts_ns - b.wall_s * 1e9 + 1 for a, b in zip(steps, steps[1:]))  # in order
    events = [e for e in loaded.events if e.get("pid") == w["pid"]]
    names = {(e["ph"], e["name"]) for e in events}
    assert {
        ("M", "process_name"),
        ("M", "thread_name"),
        ("i", "start"),
        ("i", "end"),
        ("B", "setup"),
        ("E", "setup"),
        ("C", "loss"),
        ("C", "samples_per_s"),
    } <= names
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
    assert "over 4 steps (step 1 is warm-up, left out): rates are their work over their time" in text_report.stdout
    # the rate to quote: the 4 steps' samples over their time (a median of per-step rates is kept apart)
    assert summary["samples_per_s"] == pytest.approx(16 / sum(s.wall_s for s in steps[1:]))


@pytest.mark.e2e
def test_a_gpu_reading_after_the_last_step_closes_a_fast_recording(tmp_path):
    """At 100 Hz the GPUs are read every ~0.09 s: the sample that sees the workload gone may
    carry a reading from before its last step. One more sample, a GPU interval later, is
    written, so the last steps' energy is covered."""
    out = tmp_path / "t.json"
    done = gputop("record", "--out", str(out), "--interval", "0.01", "--run", "mlp", "--", *TINY_MLP)
    assert done.returncode == 0, done.stderr
    loaded = trace.load(out)
    last_step = loaded.workload_steps()[-1]
    gpu_ts = sorted({trace.ts_ns(e["ts"]) for e in loaded.events if e.get("ph") == "C" and e.get("pid") == trace.gpu_pid(0)})
    assert gpu_ts[-1] > last_step.ts_ns
    assert loaded.samples()[-1].ts_ns == gpu_ts[-1]  # the closing sample is that GPU read


@pytest.mark.unit
def test_a_trace_without_a_workload_reports_none(tmp_path):
    path = tmp_path / "plain.json"
    writer = TraceWriter.create(str(path))
    for s in make_samples(3):
        writer.write_sample(s)
    writer.close()
    loaded = trace.load(path)
    assert loaded.workload is None and loaded.workload_steps() == []
    from gputop.commands import report

    assert report.summarize(loaded, loaded.samples())["workload"] is None


@pytest.mark.unit
def test_the_writer_keeps_steps_nested_and_counts_what_it_cannot_place(tmp_path):
    """Rounding between the child's clocks may make a step start a hair before the previous one
    ended: it is drawn from there (slices on the steps thread nest) but keeps its own wall time in
    args.wall_s, which the reader and the report use. A step that ends before the previous one did
    cannot be drawn at all: it is an instant with the same args, read back and counted."""
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
        WorkloadStep(1, 4, 2.5, 0.000010, t + 20_000),  # 10 us, ends at +20 us
        WorkloadStep(2, 4, None, 0.000015, t + 30_000),  # would start at +15 us: drawn from +20
        WorkloadStep(3, 4, 1.5, 0.000005, t + 25_000),  # ends before step 2 did: an instant
        WorkloadMark("end", t + 40_000, name="fake", args={"status": "ok"}),
    ]
    writer.write_workload(items)
    writer.write_sample(samples[1])
    writer.close()
    traceval.assert_valid(path.read_text(), strict=True)
    loaded = trace.load(path)
    drawn = [e for e in loaded.events if e.get("ph") == "X"]
    assert [(e["args"]["step"], trace.ts_ns(e["ts"]) - t, trace.ts_ns(e["dur"])) for e in drawn] == [
        (1, 10_000, 10_000),
        (2, 20_000, 10_000),
    ]
    assert {e["tid"] for e in drawn} == {trace.steps_tid(4242)}
    steps = loaded.workload_steps()
    assert [(s.step, s.ts_ns - t, round(s.wall_s * 1e9)) for s in steps] == [(1, 20_000, 10_000), (3, 25_000, 5_000), (2, 30_000, 15_000)]
    assert [s.loss for s in steps] == [2.5, 1.5, None]
    assert loaded.workload_mark("start") == {"device": "cpu"}  # NaN is not JSON: left out
    assert writer.workload_steps == 3
    assert (writer.steps_trimmed, writer.steps_out_of_order) == (1, 1)


@pytest.mark.unit
def test_report_rates_use_the_steps_own_wall_time(tmp_path):
    path = write_with_workload(tmp_path / "w.json", [WorkloadStep(k, 10, None, 0.002, T0 + k * 1_000_000) for k in range(1, 6)])
    loaded = trace.load(path)
    from gputop.commands import report

    summary = report.summarize(loaded, loaded.samples())["workload"]
    # each step took 2 ms but they overlap (1 ms apart): drawn 1 ms long, measured 2 ms
    assert summary["samples_per_s_median"] == pytest.approx(10 / 0.002)
    assert summary["step_time_s_median"] == pytest.approx(0.002)
    assert summary["lost"] == {}  # no exit mark written here: nothing claimed


def kineto_like(pid: int, base_ns: int, ops: list[tuple[str, int, int]]) -> dict:
    """The shape of torch.profiler's export_chrome_trace: the main thread is tid == pid."""
    events = [
        {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": "python3"}},
        {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}},
        {"ph": "M", "name": "thread_name", "pid": pid, "tid": pid, "args": {"name": "thread 1 (python3)"}},
    ]
    for name, begin_us, dur_us in ops:
        events.append(
            {"ph": "X", "cat": "user_annotation", "name": name, "pid": pid, "tid": pid, "ts": begin_us, "dur": dur_us, "args": {}}
        )
    return {"schemaVersion": 1, "baseTimeNanoseconds": base_ns, "traceEvents": events}


@pytest.mark.unit
def test_a_record_run_trace_merges_with_a_profile_of_the_same_process(tmp_path):
    """Kineto draws ProfilerStep#N on the main thread (tid == pid); gputop's steps, which need not
    line up with the profiler's, go on a thread of their own, and the process is named once."""
    from gputop.commands import merge

    pid = 4242
    samples = make_samples(3)
    t = samples[0].ts_ns
    rec = tmp_path / "rec.json"
    with TraceWriter.create(str(rec)) as writer:
        writer.set_workload(pid, "train.py", ["python", "train.py"])
        writer.write_sample(samples[0])
        writer.write_workload([WorkloadStep(k, 8, 1.0, 0.010, t + k * 10_000_000) for k in range(1, 5)])
        writer.write_sample(samples[1])
        writer.write_sample(samples[2])
    base_ns = t - 1_000_000_000
    # ProfilerStep#2 runs from step 1's middle to step 2's middle: it straddles a step boundary
    profile = kineto_like(pid, base_ns, [("ProfilerStep#2", 1_000_000 + 5_000, 10_000), ("aten::mm", 1_000_000 + 6_000, 1_000)])
    torch_path = tmp_path / "torch.json"
    torch_path.write_text(json.dumps(profile))
    out = tmp_path / "merged.json"
    ns = argparse.Namespace(recording=str(rec), torch_trace=str(torch_path), out=str(out), force=False)
    assert merge.run(ns, Environment.of("merge")) == 0
    report = traceval.assert_valid(out.read_text(), strict=True)
    names = [e for e in report.events if e.get("ph") == "M" and e.get("name") == "process_name" and e.get("pid") == pid]
    assert [e["args"]["name"] for e in names] == ["python3"]
    threads = {
        e["tid"]: e["args"]["name"] for e in report.events if e.get("ph") == "M" and e.get("name") == "thread_name" and e.get("pid") == pid
    }
    assert threads[trace.steps_tid(pid)] == "steps" and threads[pid] == "thread 1 (python3)"
    assert len(trace.load(out).workload_steps()) == 4


@pytest.mark.unit
def test_phases_reach_the_trace_nested_whatever_the_workload_sends(tmp_path):
    """An E closes the innermost open B of its name (and what was opened inside it first); an E
    with no B is left out; a phase still open when the recording stops is closed then."""
    samples = make_samples(2)
    t = samples[0].ts_ns
    path = tmp_path / "p.json"
    writer = TraceWriter.create(str(path))
    writer.set_workload(4242, "fake")
    writer.write_sample(samples[0])
    phase = lambda ph, name, us: WorkloadMark("phase", t + us * 1000, name=name, ph=ph)  # noqa: E731
    writer.write_workload(
        [
            phase("B", "a", 1),
            phase("B", "b", 2),
            phase("E", "a", 3),
            phase("E", "b", 4),
            phase("E", "never", 5),
            phase("B", "c", 6),
            phase("B", "d", 7),
            phase("E", "d", 6),
        ]
    )  # d ends "before" it began
    writer.write_sample(samples[1])
    writer.close()
    text = path.read_text()
    traceval.assert_valid(text, strict=True)
    got = [(e["ph"], e["name"], trace.ts_ns(e["ts"]) - t) for e in trace.load(path).events if e.get("ph") in ("B", "E")]
    assert got == [
        ("B", "a", 1000),
        ("B", "b", 2000),
        ("E", "b", 3000),
        ("E", "a", 3000),
        ("B", "c", 6000),
        ("B", "d", 7000),
        ("E", "d", 7000),
        ("E", "c", samples[1].ts_ns - t),
    ]
    assert writer.phases_unmatched == 2  # "b" (already closed with "a") and "never"


@pytest.mark.unit
def test_the_validator_checks_begin_end_nesting():
    head = '[{"ph":"M","name":"process_name","pid":7,"tid":7,"args":{"name":"p"}}\n'
    ev = lambda ph, name, ts: f',{{"ph":"{ph}","name":"{name}","pid":7,"tid":7,"ts":{ts}}}\n'  # noqa: E731
    assert traceval.validate(head + ev("B", "a", 1) + ev("E", "a", 2) + "]").ok
    assert not traceval.validate(head + ev("E", "a", 2) + "]").ok  # E without B
    assert not traceval.validate(head + ev("B", "a", 1) + ev("B", "b", 2) + ev("E", "a", 3) + ev("E", "b", 4) + "]").ok  # not nested
    assert not traceval.validate(head + ev("B", "a", 1) + "]").ok  # left open in a closed trace
    assert traceval.validate(head + ev("B", "a", 1)).ok  # cut off: may be left open
    twice = head + "," + head[1:]
    assert not traceval.validate(twice + "]").ok  # two process_name for one pid


JOB = """\
import os, signal, sys, time
sys.path.insert(0, {workloads!r})
from events import EventWriter
ev = EventWriter.from_env()
mode = sys.argv[1]
ev.start(name="job", device="cpu", batch_size=8, flops_per_step=1e9, peak_flops=1e11, steps_planned=1000)
ev.phase_begin("train")  # never ended: the recording closes it
for i in range(1, 1001):
    time.sleep(0.01)
    ev.step(step=i, samples=8, loss=1.0 / i, wall_s=0.01)
    if i == 5 and mode == "crash":
        raise RuntimeError("boom")
    if i == 5 and mode == "killed":
        sys.stderr.write(" 45%|####5     | 450/1000 [00:30<00:37, 14.8it/s]\\r"); sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.e2e
@pytest.mark.parametrize(
    "mode, ended, final, code",
    [
        ("crash", "failed: RuntimeError: boom (exit 1)", "failed (5 steps): RuntimeError: boom", 1),
        ("killed", "killed by SIGKILL", "failed (5 steps): killed by SIGKILL", 1),
        ("duration", "stopped by gputop at --duration", "stopped by gputop at --duration (", 0),
    ],
)
def test_how_the_workload_ended_is_recorded_and_reported(tmp_path, mode, ended, final, code):
    job = tmp_path / "job.py"
    job.write_text(JOB.format(workloads=str(TESTS.parent / "workloads")))
    out = tmp_path / "t.json"
    done = gputop("record", "--out", str(out), "--interval", "0.1", "--duration", "1.5", "--run", str(job), "--", mode)
    assert done.returncode == code, done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"gputop record: workload job.py {final}")
    traceval.assert_valid(out.read_text(), strict=True)  # the open phase was closed
    loaded = trace.load(out)
    exit_ = loaded.workload_mark("exit")
    assert exit_["status"] == ("stopped" if mode == "duration" else "failed")
    assert exit_["stopped_by_gputop"] is (mode == "duration")
    from gputop.commands import report

    ns = argparse.Namespace(trace=str(out), json=False, no_chart=True)
    text = io.StringIO()
    assert report.run(ns, Environment.of("report", stdout=text)) == 0
    line = next(x for x in text.getvalue().splitlines() if x.startswith("Workload job.py"))
    assert line.endswith(f" steps, {ended}"), line


@pytest.mark.unit
def test_an_end_event_error_without_a_message_is_not_none(tmp_path):
    path = write_with_workload(tmp_path / "e.json", [WorkloadMark("end", T0 + 1000, name="fake", args={"status": "error"})])
    from gputop.commands import report

    summary = report.summarize(trace.load(path), trace.load(path).samples())["workload"]
    assert summary["ended"] == "ended with an error (no message)"


@pytest.mark.e2e
def test_a_long_interval_loses_no_step(tmp_path):
    """Steps are written every DRAIN_S whatever --interval: 120,000 steps arriving within one
    interval all reach the trace, and the recording ends with the workload, not at the next tick."""
    job = tmp_path / "many.py"
    job.write_text(
        textwrap.dedent("""\
        import os, time
        fd = int(os.environ["GPUTOP_EVENTS_FD"])
        t = time.time_ns()
        for chunk in range(0, 120000, 1000):
            os.write(fd, b"".join(b'{"event":"step","step":%d,"samples":1,"loss":null,"wall_s":0.000001,"ts_ns":%d}\\n'
                                  % (k, t + k * 2000) for k in range(chunk + 1, chunk + 1001)))
        time.sleep(1)
    """)
    )
    out = tmp_path / "t.json"
    t0 = time.monotonic()
    done = gputop("record", "--out", str(out), "--interval", "20", "--run", str(job))
    assert time.monotonic() - t0 < 18, "waited for the next sample to see the workload end"
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == "gputop record: workload many.py finished (120000 steps)"
    assert len(trace.load(out).workload_steps()) == 120_000


@pytest.mark.e2e
def test_a_bad_target_is_one_line_and_no_file(tmp_path):
    out = tmp_path / "t.json"
    done = gputop("record", "--out", str(out), "--run", str(tmp_path / "nope.py"), timeout=60)
    assert done.returncode == 2 and not out.exists()
    assert done.stderr == f"gputop record: error: no such file: {tmp_path / 'nope.py'}\n"


@pytest.mark.e2e
def test_arguments_after_dashes_need_a_workload(tmp_path):
    done = gputop("record", "--out", str(tmp_path / "t.json"), "--", "--steps", "3", timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "with --run" in done.stderr
    assert not (tmp_path / "t.json").exists()


@pytest.mark.e2e
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


@pytest.mark.e2e
def test_duration_stops_the_workload_and_its_group(tmp_path):
    job = tmp_path / "job.py"
    pidfile = tmp_path / "pid"
    job.write_text(
        textwrap.dedent(f"""\
        import os, time
        open({str(pidfile)!r}, "w").write(str(os.getpgid(0)))
        time.sleep(120)
    """)
    )
    out = tmp_path / "t.json"
    t0 = time.monotonic()
    done = gputop("record", "--out", str(out), "--interval", "0.1", "--duration", "1", "--run", str(job))
    assert time.monotonic() - t0 < 60
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == "gputop record: workload job.py stopped by gputop at --duration (no steps reported)"
    with pytest.raises(ProcessLookupError):
        os.killpg(int(pidfile.read_text()), 0)
    traceval.assert_valid(out.read_text(), strict=True)
