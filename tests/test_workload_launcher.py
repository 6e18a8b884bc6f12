"""gputop.workload.Workload: resolving a target, launching, reading events, energy, stopping.

Real child processes, tiny: most are a few lines of plain Python (no torch); one runs the bundled
mlp at a toy size (~3 s, mostly importing torch).
"""

from __future__ import annotations

import os
import re
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gputop.model import CpuSample, GpuInfo, GpuSample, Sample, WorkloadStep
from gputop.workload import BUNDLED, Workload, WorkloadError, resolve

TINY_MLP = ["--device", "cpu", "--hidden", "32", "--layers", "1", "--batch-size", "4", "--steps", "3", "--quiet"]


def script(tmp_path: Path, body: str, name: str = "job.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def run_to_end(wl: Workload, timeout: float = 60.0, sample_fn=None):
    wl.start()
    deadline = time.monotonic() + timeout
    state = wl.poll()
    while state.running:
        assert time.monotonic() < deadline, f"workload still running: {state.output_tail}"
        time.sleep(0.02)
        state = wl.poll(sample_fn() if sample_fn else None)
    return state


def group_has_members(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# ---- resolve -------------------------------------------------------------------------------


@pytest.mark.unit
def test_bundled_names_run_as_modules_of_the_package():
    for name in BUNDLED:
        got_name, command = resolve(name)
        assert got_name == name and command == (sys.executable, "-m", f"gputop.workloads.{name}")


@pytest.mark.unit
def test_a_script_runs_with_this_python(tmp_path):
    path = script(tmp_path, "print('hi')\n")
    assert resolve(path) == ("job.py", (sys.executable, path))


@pytest.mark.unit
@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: str(p / "missing.py"), "no such file: "),
        (lambda p: str(p), "is a directory, not a Python script"),
        (lambda p: script(p, "x = 1\ndef broken(:\n    pass\n"), "job.py:2: syntax error"),
        (lambda p: "resnet", "unknown workload 'resnet'"),
    ],
)
def test_bad_targets_are_one_clear_line(tmp_path, make, words):
    with pytest.raises(WorkloadError) as caught:
        Workload(make(tmp_path))
    message = str(caught.value)
    assert words in message and "\n" not in message
    if "unknown" in words:
        assert all(name in message for name in BUNDLED)


# ---- running -------------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_bundled_workload_reports_steps_and_rates():
    wl = Workload("mlp", TINY_MLP, collect=True)
    state = run_to_end(wl)
    assert state.status == "ok" and state.returncode == 0 and state.error is None
    assert state.events and state.events_ignored == 0
    assert state.name == "mlp" and state.device == "cpu" and state.batch_size == 4
    assert state.step == 3 and state.steps_planned == 3
    assert [s.step for s in state.recent_steps] == [1, 2, 3]
    assert state.samples_per_s > 0 and state.tflops > 0 and state.mfu_pct > 0
    assert state.flops_per_step > 0 and state.peak_flops_source == "measured"
    assert state.loss is not None and len(state.losses) == 3
    assert state.ended_ns is not None and state.pids == frozenset()
    kinds = [getattr(item, "kind", "step") for item in wl.drain()]
    assert kinds.count("step") == 3 and "start" in kinds and kinds[-1] == "end"
    assert wl.drain() == []
    assert wl.stop().status == "ok"  # stopping a finished workload changes nothing


@pytest.mark.e2e
def test_a_plain_script_without_events_still_has_a_state(tmp_path):
    path = script(
        tmp_path,
        """\
        import sys
        print("hello from stdout")
        print("and from stderr", file=sys.stderr)
    """,
    )
    wl = Workload(path)
    state = run_to_end(wl)
    with pytest.raises(RuntimeError):
        wl.drain()  # nothing is kept for it without collect=True
    assert state.status == "ok" and state.pid is not None and not state.events
    assert "hello from stdout" in state.output_tail and "and from stderr" in state.output_tail
    assert state.step is None and state.samples_per_s is None and state.tflops is None
    assert state.mfu_pct is None and state.joules_per_step is None and state.device is None
    assert state.argv == (sys.executable, path)


@pytest.mark.e2e
def test_a_crash_fails_with_the_last_line_of_stderr(tmp_path):
    path = script(
        tmp_path,
        """\
        import sys
        print("working...", file=sys.stderr)
        raise RuntimeError("out of memory, pretend")
    """,
    )
    state = run_to_end(Workload(path))
    assert state.status == "failed" and state.returncode == 1
    assert state.error == "RuntimeError: out of memory, pretend"


@pytest.mark.e2e
def test_an_end_event_error_is_the_error(tmp_path):
    path = script(
        tmp_path,
        """\
        import json, os
        fd = int(os.environ["GPUTOP_EVENTS_FD"])
        os.write(fd, json.dumps({"event": "end", "ts_ns": 1, "steps": 0, "status": "error",
                                 "error": "ValueError: bad batch"}).encode() + b"\\n")
    """,
    )
    state = run_to_end(Workload(path))
    assert state.returncode == 0 and state.status == "failed" and state.error == "ValueError: bad batch"


@pytest.mark.e2e
def test_a_killed_child_fails_and_says_by_what(tmp_path):
    path = script(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    state = run_to_end(Workload(path))
    assert state.status == "failed" and state.returncode == -signal.SIGKILL
    assert state.error == "killed by SIGKILL"


@pytest.mark.e2e
def test_arguments_reach_the_script(tmp_path):
    path = script(tmp_path, "import sys\nprint('args', sys.argv[1:])\n")
    state = run_to_end(Workload(path, ["--steps", "3", "a b"]))
    assert "args ['--steps', '3', 'a b']" in state.output_tail


@pytest.mark.e2e
def test_malformed_events_are_ignored_and_counted(tmp_path):
    path = script(
        tmp_path,
        """\
        import os
        fd = int(os.environ["GPUTOP_EVENTS_FD"])
        lines = [
            b"not json at all",
            b'{"event": "step", "step": 1, "samples": 8, "loss": 1.5, "wall_s": 0.5}',  # no ts_ns
            b'[1, 2, 3]',
            b'{"event": "step", "step": "two", "samples": 8, "loss": 1.0, "wall_s": 0.5, "ts_ns": 5}',
            b'{"event": "step", "step": 2, "samples": 8, "loss": "low", "wall_s": 0.5, "ts_ns": 5}',
            b'{"event": "step", "step": 3, "samples": 8, "loss": null, "wall_s": -1, "ts_ns": 5}',
            b'{"event": "teleport", "ts_ns": 5}',
            b'{"event": "phase", "name": "setup", "ph": "X", "ts_ns": 5}',
            b'{"event": "step", "step": 4, "samples": 8, "loss": 0.25, "wall_s": 0.5, "ts_ns": 9}',
            b'\\xff\\xfe binary',
        ]
        os.write(fd, b"\\n".join(lines) + b"\\n")
        os.write(fd, b'{"event": "step", "step": 5, "samples": 8, "loss": 0.125, "wall_s": 0.5, "ts_ns": 10}')
    """,
    )
    state = run_to_end(Workload(path))
    assert state.status == "ok" and state.events
    assert [s.step for s in state.recent_steps] == [4, 5]  # the last one had no newline
    assert state.loss == 0.125 and state.events_ignored == 9


@pytest.mark.e2e
def test_a_workload_never_waits_for_a_consumer_that_does_not_poll(tmp_path):
    """A paused live view polls nothing: 30,000 events (~2 MB, far over a pipe's 64 KiB) must
    still not block the child's writes."""
    path = script(
        tmp_path,
        """\
        import os
        fd = int(os.environ["GPUTOP_EVENTS_FD"])
        for k in range(1, 30001):
            os.write(fd, b'{"event":"step","step":%d,"samples":1,"loss":null,"wall_s":0.001,"ts_ns":%d}\\n' % (k, k))
    """,
    )
    wl = Workload(path, keep_steps=10)
    wl.start()
    assert wl.proc.wait(timeout=30) == 0  # no poll() meanwhile
    state = wl.poll()
    assert state.status == "ok" and state.step == 30000 and state.events_ignored == 0
    assert [s.step for s in state.recent_steps] == list(range(29991, 30001))


@pytest.mark.e2e
def test_rates_come_from_step_wall_time_and_leave_out_step_1(tmp_path):
    path = script(
        tmp_path,
        """\
        import json, os, time
        fd = int(os.environ["GPUTOP_EVENTS_FD"])
        def emit(**e):
            os.write(fd, (json.dumps(e) + "\\n").encode())
        emit(event="start", ts_ns=1, name="fake", device="cpu", batch_size=10, flops_per_step=2e12,
             peak_flops=8e12, peak_flops_source="table", steps_planned=4)
        emit(event="step", step=1, samples=10, loss=2.0, wall_s=5.0, ts_ns=10)
        for k in (2, 3, 4):
            emit(event="step", step=k, samples=10, loss=1.0, wall_s=0.5, ts_ns=10 + k)
        time.sleep(0.3)  # wall clock between polls has nothing to do with it
    """,
    )
    state = run_to_end(Workload(path))
    assert state.samples_per_s == pytest.approx(20.0)  # 10 samples / 0.5 s
    assert state.tflops == pytest.approx(4.0)  # 2e12 FLOPs / 0.5 s
    assert state.mfu_pct == pytest.approx(50.0)
    assert state.peak_flops_source == "table" and state.steps_planned == 4


@pytest.mark.e2e
def test_a_finished_job_s_rates_are_its_whole_run_s_not_its_last_window_s(tmp_path):
    """#26.8: once ended, the panel kept the last 3 s of steps' rate (a slow tail: 1,003/s) while
    the job's own summary gave its whole run's (2,803/s). Steps 2-101 of 0.01 s, then 10 of 1 s;
    more steps than the state keeps (64), so the sum is over every step, not the recent ones."""
    path = script(
        tmp_path,
        """\
        import json, os
        fd = int(os.environ["GPUTOP_EVENTS_FD"])
        def emit(**e):
            os.write(fd, (json.dumps(e) + "\\n").encode())
        emit(event="start", ts_ns=1, name="fake", device="cpu", batch_size=10, flops_per_step=1e9, peak_flops=1e12)
        emit(event="step", step=1, samples=10, loss=2.0, wall_s=9.0, ts_ns=10)
        for k in range(2, 102):
            emit(event="step", step=k, samples=10, loss=1.0, wall_s=0.01, ts_ns=10 + k)
        for k in range(102, 112):
            emit(event="step", step=k, samples=10, loss=1.0, wall_s=1.0, ts_ns=10 + k)
    """,
    )
    state = run_to_end(Workload(path))
    assert state.status == "ok" and state.step == 111
    assert state.samples_per_s == pytest.approx(110 * 10 / (100 * 0.01 + 10 * 1.0))  # 100/s, not the tail's 10/s
    assert state.tflops == pytest.approx(110 * 1e9 / 11.0 / 1e12)
    assert state.mfu_pct == pytest.approx(100 * 110 * 1e9 / 11.0 / 1e12)


@pytest.mark.unit
def test_run_totals_sum_every_step_but_the_first_unless_it_is_alone():
    from gputop.workload import rates

    run = rates.RunTotals()
    run.add(WorkloadStep(1, 8, None, 2.0, 1))
    assert run.rates(None, None).samples_per_s == pytest.approx(4.0)  # step 1 alone: its own rate
    run.add(WorkloadStep(2, 8, None, 0.5, 2))
    run.add(WorkloadStep(3, 8, None, 1.5, 3))
    assert run.rates(None, None).samples_per_s == pytest.approx(16 / 2.0)
    run.add(WorkloadStep(4, None, None, 1.0, 4))  # a step whose samples are unknown: samples/s n/a
    assert run.rates(None, None).samples_per_s is None


# ---- energy --------------------------------------------------------------------------------

T0 = 1_800_000_000 * 10**9
INFO = [
    GpuInfo(
        index=i,
        name="fake",
        uuid=f"GPU-{i}{i}{i}",
        pci_bus_id=None,
        architecture=None,
        sm_count=None,
        mem_bus_width_bits=None,
        max_mem_clock_mhz=None,
        peak_dram_bw_bytes_per_s=None,
        driver_version=None,
        cuda_version=None,
    )
    for i in range(2)
]


def sample_at(seconds: float, cpu_power_w: float | None, energy_j: tuple[float | None, ...] = (None, None)) -> Sample:
    cpu = CpuSample(
        cpu_util_pct=50.0,
        core_util_pct=(50.0,),
        core_freq_mhz=(None,),
        cpu_power_w=cpu_power_w,
        ram_used_bytes=1,
        ram_total_bytes=2,
        load1=None,
    )
    gpus = tuple(GpuSample(INFO[i], energy_j=e) for i, e in enumerate(energy_j))
    return Sample(ts_ns=T0 + int(seconds * 1e9), cpu=cpu, gpus=gpus)


def fake_steps(tmp_path: Path, device: str, uuid: str | None = None) -> str:
    """Steps at known times: step k ran from T0 + k - 0.5 s to T0 + k s (k = 1, 2, 3)."""
    return script(
        tmp_path,
        f"""\
        import json, os
        fd = int(os.environ["GPUTOP_EVENTS_FD"])
        def emit(**e):
            os.write(fd, (json.dumps(e) + "\\n").encode())
        emit(event="start", ts_ns={T0}, name="fake", device="{device}", batch_size=4, device_uuid={uuid!r})
        for k in (1, 2, 3):
            emit(event="step", step=k, samples=4, loss=None, wall_s=0.5, ts_ns={T0} + k * 10**9)
    """,
    )


@pytest.mark.e2e
def test_cpu_energy_is_package_power_over_each_step(tmp_path):
    wl = Workload(fake_steps(tmp_path, "cpu"))
    run_to_end(wl)
    wl.poll(sample_at(0.0, 40.0))  # starts the curve (its power is for the time before)
    wl.poll(sample_at(1.0, 40.0))
    wl.poll(sample_at(2.0, None))  # a gap: unknown from 1 s to 2 s
    state = wl.poll(sample_at(3.0, 100.0))
    joules = [s.joules for s in state.recent_steps]
    # step 1 (0.5-1 s): 40 W x 0.5 s. Step 2 (1.5-2 s) falls in the gap, step 3 (2.5-3 s)
    # right after it: the curve restarts at 3 s, so neither is covered: None, not a guess.
    assert joules == [pytest.approx(20.0), None, None]
    state = wl.poll(sample_at(4.0, 100.0))
    assert [s.joules for s in state.recent_steps] == [pytest.approx(20.0), None, None]
    assert state.joules_per_step is None  # the rate window (steps 2-3) has no measured step


@pytest.mark.e2e
def test_gpu_energy_is_the_counter_delta_of_the_visible_device(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="1")  # the child's cuda:0 is NVML device 1
    wl = Workload(fake_steps(tmp_path, "cuda:0"), env=env)
    run_to_end(wl)
    for t in range(5):  # device 0 uses 1000 W, device 1 uses 300 W
        state = wl.poll(sample_at(float(t), None, (1e6 + 1000.0 * t, 5e5 + 300.0 * t)))
    assert [s.joules for s in state.recent_steps] == [pytest.approx(150.0)] * 3
    assert state.joules_per_step == pytest.approx(150.0)


@pytest.mark.e2e
def test_gpu_energy_of_a_reading_carried_between_gpu_reads_keeps_its_own_time(tmp_path):
    """At 100 Hz the samples between two GPU reads carry the same GpuSample: the energy it holds
    was read at the first of them, so it goes on the curve once, at that time (not as a flat
    stretch then a jump, which would give steps inside it no energy at all)."""
    wl = Workload(fake_steps(tmp_path, "cuda:0"))
    run_to_end(wl)
    state = None
    for t in range(5):  # read at whole seconds at 400 W; each reading carried for 0.9 s after
        fresh = sample_at(float(t), None, (1e6 + 400.0 * t, None))
        for carried in range(10):
            s = fresh if carried == 0 else Sample(ts_ns=fresh.ts_ns + carried * 10**8, cpu=fresh.cpu, gpus=fresh.gpus)
            state = wl.poll(s)
    assert [s.joules for s in state.recent_steps] == [pytest.approx(200.0)] * 3  # 400 W x 0.5 s


@pytest.mark.e2e
def test_gpu_energy_follows_the_device_uuid_the_workload_reports(tmp_path):
    """CUDA orders devices fastest first, NVML by PCI bus: the child's cuda:0 can be NVML's 1.
    torch reports the UUID without NVML's "GPU-" prefix; that is the match, not the ordinal."""
    wl = Workload(fake_steps(tmp_path, "cuda", uuid=INFO[1].uuid.removeprefix("GPU-").upper()))
    run_to_end(wl)
    for t in range(5):  # device 0 uses 1000 W, device 1 uses 300 W
        state = wl.poll(sample_at(float(t), None, (1e6 + 1000.0 * t, 5e5 + 300.0 * t)))
    assert state.joules_per_step == pytest.approx(150.0)


@pytest.mark.e2e
def test_gpu_energy_unknown_where_cuda_visible_devices_cannot_be_told(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="MIG-4f1e")
    wl = Workload(fake_steps(tmp_path, "cuda"), env=env)
    run_to_end(wl)
    for t in range(5):
        state = wl.poll(sample_at(float(t), 50.0, (1000.0 * t, 300.0 * t)))
    assert state.joules_per_step is None and all(s.joules is None for s in state.recent_steps)


# ---- stopping ------------------------------------------------------------------------------


def spawner(tmp_path: Path, ignore_term: bool) -> str:
    """A child that starts a grandchild (both ignoring SIGTERM when asked) and waits."""
    ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN)" if ignore_term else ""
    return script(
        tmp_path,
        f"""\
        import signal, subprocess, sys, time
        {ignore}
        grand = subprocess.Popen([sys.executable, "-c",
                                  "import signal, time\\n{ignore}\\ntime.sleep(120)"])
        print("grandchild", grand.pid, flush=True)
        time.sleep(120)
    """,
    )


def wait_for_grandchild(wl: Workload) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = wl.poll()
        lines = [line for line in state.output_tail if line.startswith("grandchild ")]
        if lines and len(state.pids) == 2:
            grand = int(lines[0].split()[1])
            assert state.pids == {state.pid, grand}
            return grand
        time.sleep(0.05)
    raise AssertionError(f"no grandchild seen: {wl.poll()}")


@pytest.mark.e2e
@pytest.mark.parametrize("ignore_term", [False, True], ids=["sigterm", "sigkill-after-grace"])
def test_stop_ends_the_whole_group(tmp_path, ignore_term):
    wl = Workload(spawner(tmp_path, ignore_term))
    wl.start()
    pgid = wl.pgid
    wait_for_grandchild(wl)
    t0 = time.monotonic()
    state = wl.stop(grace_s=2.0)
    took = time.monotonic() - t0
    assert state.status == "stopped" and not state.running
    assert state.returncode == (-signal.SIGKILL if ignore_term else -signal.SIGTERM)
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)  # nothing left in the group, not even a zombie
    assert took < 6
    assert (took >= 2.0) == ignore_term  # SIGKILL only after the grace
    assert wl.stop().status == "stopped"  # idempotent


@pytest.mark.e2e
def test_stop_before_start_and_start_twice(tmp_path):
    wl = Workload(script(tmp_path, "pass\n"))
    assert wl.stop().status == "stopped" and wl.state.pid is None
    with pytest.raises(RuntimeError):
        wl.start()
    wl2 = Workload(script(tmp_path, "pass\n", "b.py"))
    run_to_end(wl2)
    with pytest.raises(RuntimeError):
        wl2.start()


@pytest.mark.e2e
def test_a_bundled_workload_stopped_mid_run_says_stopped(tmp_path):
    wl = Workload(
        "mlp", ["--device", "cpu", "--hidden", "32", "--layers", "1", "--batch-size", "4", "--steps", "100000", "--quiet"], collect=True
    )
    wl.start()
    deadline = time.monotonic() + 60
    while wl.poll().step is None:
        assert time.monotonic() < deadline, wl.poll().output_tail
        time.sleep(0.05)
    state = wl.stop()
    assert state.status == "stopped" and state.error is None
    end = [m for m in wl.drain() if getattr(m, "kind", "") == "end"]
    assert end and end[0].args == {"status": "error", "error": "terminated"}  # it ran its finally
    assert not group_has_members(wl.pgid)


# ---- the command line ----------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize(
    "argv, words",
    [
        (["--run", "nope.py"], "gputop: error: no such file: nope.py"),
        (["--run", "resnet"], "gputop: error: unknown workload 'resnet'"),
        (["--run", "mlp", "snapshot"], "'gputop record --out PATH --run mlp'"),
        (["snapshot", "--", "--steps", "3"], "arguments after '--' go to a workload"),
    ],
)
def test_bad_run_input_is_one_line_and_exit_2(tmp_path, argv, words):
    import subprocess

    out = subprocess.run([sys.executable, "-m", "gputop", *argv], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and words in out.stderr and "Traceback" not in out.stderr


# ---- review fixes: signals after the end, the error line, the preexec guard, lost events ----


@pytest.mark.e2e
def test_stop_after_a_natural_end_signals_nothing(tmp_path, monkeypatch):
    """The group's pgid may belong to an unrelated group once the workload has ended and been
    reaped: stop() must not send it SIGTERM (nor SIGKILL after the grace)."""
    sent = []
    real = os.killpg

    def spy(pgid, sig):
        if sig != 0:  # probing (signal 0) delivers nothing
            sent.append((pgid, sig))
        return real(pgid, sig)

    monkeypatch.setattr(os, "killpg", spy)
    wl = Workload(script(tmp_path, "print('done')\n"))
    state = run_to_end(wl)
    assert state.status == "ok"
    sent.clear()
    assert wl.stop().status == "ok"
    assert wl.stop().status == "ok"
    assert sent == []


@pytest.mark.e2e
def test_stop_after_an_unpolled_end_signals_nothing(tmp_path, monkeypatch):
    sent = []
    real = os.killpg
    monkeypatch.setattr(os, "killpg", lambda pgid, sig: (sig and sent.append(sig), real(pgid, sig))[1])
    wl = Workload(script(tmp_path, "print('done')\n"))
    wl.start()
    wl.proc.wait()  # ended, not yet seen by poll()
    assert wl.stop().status == "ok" and sent == []


@pytest.mark.e2e
def test_a_signal_is_the_error_not_the_last_progress_bar(tmp_path):
    path = script(
        tmp_path,
        """\
        import logging, os, signal, sys
        logging.basicConfig(level=logging.INFO)
        logging.info("epoch 3: loss 0.51")
        sys.stderr.write(" 45%|####5     | 450/1000 [00:30<00:37, 14.8it/s]\\r"); sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)   # what the kernel's OOM killer does
    """,
    )
    state = run_to_end(Workload(path))
    assert state.returncode == -signal.SIGKILL and state.error == "killed by SIGKILL"


@pytest.mark.e2e
@pytest.mark.parametrize("bar_end", ["\\r", "\\r\\n"])
def test_an_exit_code_error_is_the_last_stderr_line_that_is_not_a_progress_bar(tmp_path, bar_end):
    """tqdm redraws with \\r, and its last bar may end with a newline after a \\r: neither is why."""
    path = script(
        tmp_path,
        f"""\
        import sys, time
        sys.stderr.write("ValueError: bad shard 7\\n")
        for k in range(3):
            sys.stderr.write(f"\\r{{k}}/3 [00:01<00:02]"); sys.stderr.flush(); time.sleep(0.01)
        sys.stderr.write("{bar_end}"); sys.stderr.flush()
        sys.exit(3)
    """,
    )
    state = run_to_end(Workload(path))
    assert state.returncode == 3 and state.error == "ValueError: bad shard 7"
    assert "2/3 [00:01<00:02]" in state.output_tail  # the bar is still in the output


@pytest.mark.e2e
def test_a_traceback_s_exception_line_is_the_error_not_the_hint_printed_after_it(tmp_path):
    """#26.11: torch.load's UnpicklingError is followed by lines of advice and a docs URL; the
    reason is the exception line (of the last traceback, where one was handled before it)."""
    path = script(
        tmp_path,
        """\
        import pickle, sys, traceback
        try:
            {}["missing"]
        except KeyError:
            traceback.print_exc()  # logged and handled: not why it failed
        class UnpicklingError(pickle.UnpicklingError):
            def __str__(self):
                return "Weights only load failed.\\nCheck the documentation of torch.load: https://example.invalid/load"
        UnpicklingError.__module__ = "_pickle"
        raise UnpicklingError()
    """,
    )
    state = run_to_end(Workload(path))
    assert state.returncode == 1
    assert state.error == "_pickle.UnpicklingError: Weights only load failed."


@pytest.mark.e2e
def test_without_a_traceback_the_error_is_still_the_last_stderr_line(tmp_path):
    path = script(tmp_path, "raise SystemExit('bad config: no data')\n")
    state = run_to_end(Workload(path))
    assert state.returncode == 1 and state.error == "bad config: no data"


@pytest.mark.e2e
def test_the_preexec_guard_ends_a_child_whose_parent_is_gone(tmp_path, monkeypatch):
    """The child inherits Python's SIGTERM handler until exec (record's StopSignals), so the guard
    that catches a parent dead before PR_SET_PDEATHSIG took effect must not rely on SIGTERM."""
    from gputop.workload import process as wl_module

    if wl_module._libc_prctl() is None:
        pytest.skip("no prctl here")
    old = signal.signal(signal.SIGTERM, lambda *a: None)
    monkeypatch.setattr(os, "getppid", lambda: 1)  # in the forked child too: "the parent is gone"
    try:
        wl = Workload(script(tmp_path, "print('ran past exec')\n"))
        wl.start()
        rc = wl.proc.wait(30)
    finally:
        monkeypatch.undo()
        signal.signal(signal.SIGTERM, old)
    state = wl.stop()
    assert "ran past exec" not in state.output_tail
    assert rc == 1


@pytest.mark.e2e
def test_a_recorder_loses_no_event_however_many_arrive_between_two_drains(tmp_path):
    n = 120_000  # more than the viewer's bound (EVENT_LINES) between two drains
    path = script(
        tmp_path,
        f"""\
        import os, time
        fd = int(os.environ["GPUTOP_EVENTS_FD"])
        t = time.time_ns()
        for chunk in range(0, {n}, 1000):
            os.write(fd, b"".join(b'{{"event":"step","step":%d,"samples":1,"loss":null,"wall_s":0.000001,"ts_ns":%d}}\\n'
                                  % (k, t + k * 2000) for k in range(chunk + 1, chunk + 1001)))
    """,
    )
    wl = Workload(path, collect=True)
    wl.start()
    wl.proc.wait(60)
    time.sleep(0.5)
    items = wl.drain()
    state = wl.stop()
    items += wl.drain()
    assert len(items) == n and [s.step for s in items[:3]] == [1, 2, 3]
    assert state.events_ignored == 0 and wl.pending_dropped == 0


@pytest.mark.unit
def test_the_events_fd_is_used_only_if_it_is_a_pipe(tmp_path):
    """GPUTOP_EVENTS_FD reaches the script's own children through the environment, without the
    descriptor: a file they opened under that number must not get events written into it."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "workloads"))
    try:
        import events
    finally:
        sys.path.pop(0)
    data = tmp_path / "data.bin"
    fd = os.open(data, os.O_WRONLY | os.O_CREAT, 0o644)
    r, w = os.pipe()
    try:
        ev = events.EventWriter.from_env({events.ENV_FD: str(fd)})
        assert not ev.enabled and ev.step(1, 1, None, 0.1) is False
        assert events.EventWriter.from_env({events.ENV_FD: str(w)}).enabled
        assert not events.EventWriter.from_env({events.ENV_FD: "99999"}).enabled
    finally:
        for d in (fd, r, w):
            os.close(d)
    assert data.read_bytes() == b""


@pytest.mark.e2e
def test_the_age_of_the_last_step_tells_stale_rates(tmp_path):
    path = script(
        tmp_path,
        """\
        import json, os, time
        fd = int(os.environ["GPUTOP_EVENTS_FD"])
        os.write(fd, (json.dumps({"event": "step", "ts_ns": time.time_ns(), "step": 1,
                                  "samples": 4, "loss": None, "wall_s": 0.01}) + "\\n").encode())
        time.sleep(30)
    """,
    )
    now = [0]
    wl = Workload(path, clock_ns=lambda: now[0] or time.time_ns())
    try:
        wl.start()
        deadline = time.monotonic() + 30
        while wl.poll().step is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert wl.poll().last_step_age_s < 5
        now[0] = wl.state.recent_steps[-1].ts_ns + 12_000_000_000  # 12 s later, no new step
        state = wl.poll()
        assert state.last_step_age_s == pytest.approx(12.0) and state.samples_per_s == pytest.approx(400)
    finally:
        wl.stop(grace_s=0.5)
    assert Workload(path).state.last_step_age_s is None


@pytest.mark.unit
def test_a_distributed_jobs_data_wait_and_verdict_are_its_slowest_ranks_not_its_ranks_mixed(tmp_path):
    """The workload panel's data wait mixed every rank's steps (39 % beside the ranks' 1 % and 79 %):
    it is the slowest rank's, as report's; compare still sees every rank's steps."""
    path = script(
        tmp_path,
        """\
        import json, os, time
        fd = int(os.environ["GPUTOP_EVENTS_FD"])
        def emit(**e):
            os.write(fd, (json.dumps(e) + "\\n").encode())
        for rank in (0, 1):
            emit(event="hello", source="auto", pid=100 + rank, ppid=1, rank=rank, world_size=2, ts_ns=1)
        for k in range(1, 21):  # rank 1 waits 36 of its 40 ms for its batch; rank 0 none of its 30
            emit(event="step", source="auto", step=k, samples=4, loss=None, wall_s=0.03, ts_ns=10**9 + k * 10**7,
                 data_wait_s=0.0, waits=[], pid=100, rank=0)
            emit(event="step", source="auto", step=k, samples=4, loss=None, wall_s=0.04, ts_ns=10**9 + k * 10**7 + 1,
                 data_wait_s=0.036, waits=[], pid=101, rank=1)
        time.sleep(0.3)
    """,
    )
    state = run_to_end(Workload(path))
    assert [r.rank for r in state.ranks] == [0, 1]
    assert {s.rank for s in state.recent_steps} == {1}  # the job's series: its slowest rank's
    assert state.data_wait_share == pytest.approx(0.9)  # not (0 + 0.9) / 2
    assert state.verdict is not None and "90 %" in state.verdict.evidence, state.verdict  # data-bound, from its share
    assert {s.rank for s in state.rank_steps} == {0, 1} and len(state.rank_steps) == 40


@pytest.mark.e2e
@pytest.mark.parametrize("unbuffered", ["1", None])
def test_the_lines_of_processes_that_share_the_jobs_stdout_never_run_together(tmp_path, monkeypatch, unbuffered):
    # a job's ranks share its stdout: each printed line must reach gputop whole (the hooks make it
    # line-buffered: one write a line), never two ranks' lines run together, PYTHONUNBUFFERED set
    # by the user (a print is then two writes: its text, its newline) or not
    if unbuffered is None:
        monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    else:
        monkeypatch.setenv("PYTHONUNBUFFERED", unbuffered)
    path = script(
        tmp_path,
        """\
        import subprocess, sys
        if len(sys.argv) > 1:
            for i in range(1500):
                print(f"proc {sys.argv[1]} line {i} " + "x" * 60)
        else:
            kids = [subprocess.Popen([sys.executable, __file__, str(n)]) for n in range(3)]
            print("started")
            for kid in kids:
                kid.wait()
    """,
    )
    wl = Workload(path, collect=True)
    wl.start()
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while True:
        lines += [m.args["line"] for m in wl.drain() if getattr(m, "kind", None) == "output" and m.name == "stdout"]
        if not wl.poll().running:
            lines += [m.args["line"] for m in wl.drain() if getattr(m, "kind", None) == "output" and m.name == "stdout"]
            break
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.05)
    printed = [line for line in lines if line != "started"]
    whole = re.compile(r"proc \d line \d+ x{60}")
    assert [line for line in printed if not whole.fullmatch(line)] == []
    assert len(printed) == 3 * 1500
