"""`gputop report` read as a stream: the same numbers as the list-based reference on real
recordings, percentiles within the stated error on long ones, bounded structures, a progress
bar only on a terminal, and a trace still being written told apart from a cut one (#12.17)."""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import time

import pytest

import longtrace
from gputop.commands import report, stats
from gputop.commands.progress import Progress
from gputop.environment import Environment
from gputop.trace import load
from gputop.trace.stream import TraceStream, decoder_for, samples
from gputop.workload import rates

pytestmark = pytest.mark.xdist_group("report_stream")  # its module fixture runs once, on one worker

TESTS = pathlib.Path(__file__).resolve().parent
DATA = TESTS / "data" / "h100_fake.json"


def env() -> dict[str, str]:
    out = dict(os.environ, GPUTOP_FAKE_NVML="H100_SXM")
    out["PYTHONPATH"] = os.pathsep.join([str(TESTS / "sitecustom"), str(TESTS), out.get("PYTHONPATH", "")])
    return out


def record(out: pathlib.Path, *flags: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gputop", "record", "--out", str(out), *flags], capture_output=True, text=True, timeout=120, env=env()
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> pathlib.Path:
    """A real 100 Hz recording on the NVML fake (GPUs read every ~0.1 s, carried between)."""
    out = tmp_path_factory.mktemp("rec") / "rec.json"
    record(out, "--interval", "0.01", "--duration", "2")
    return out


def reference(path: pathlib.Path) -> dict:
    """The numbers as report computed them before it streamed: lists of every sample's values."""
    tr = load(path)
    samples = tr.samples()
    ts = [s.ts_ns for s in samples]
    out = {"samples": len(samples), "duration_s": (ts[-1] - ts[0]) / 1e9, "cpu": {}, "gpus": []}
    for m in report.CPU_STATS:
        out["cpu"][m] = report.stats(getattr(s.cpu, m) for s in samples)
    out["cpu_energy"] = report.integrate_j(ts, [s.cpu.cpu_power_w for s in samples])
    for k in range(len(tr.gpus)):
        col = [s.gpus[k] for s in samples]
        energy = [g.energy_j for g in col if g.energy_j is not None]
        both = [(g.gpu_util_pct, g.sm_active_pct) for g in col if g.gpu_util_pct is not None and g.sm_active_pct is not None]
        out["gpus"].append(
            {
                "metrics": {m: report.stats(getattr(g, m) for g in col) for m in report.GPU_STATS},
                "energy_j": energy[-1] - energy[0] if len(energy) >= 2 else report.integrate_j(ts, [g.power_w for g in col]),
                "util_trap_samples": len(both),
                "lost_samples": sum(g.lost for g in col),
            }
        )
    return out


def close(a, b, rel: float) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


def assert_same(path: pathlib.Path, *, rel_mean: float, rel_pct: float) -> dict:
    summary, _ = report.read(str(path))
    ref = reference(path)
    assert summary["samples"] == ref["samples"] and summary["duration_s"] == ref["duration_s"]
    assert close(summary["cpu"]["energy_j"], ref["cpu_energy"], rel_mean)
    pairs = [(summary["cpu"]["metrics"], ref["cpu"])]
    for got, want in zip(summary["gpus"], ref["gpus"], strict=True):
        pairs.append((got["metrics"], want["metrics"]))
        assert close(got["energy_j"], want["energy_j"], rel_mean)
        assert got["util_trap_samples"] == want["util_trap_samples"]
        assert got["lost_samples"] == want["lost_samples"]
    for got, want in pairs:
        for metric, st in want.items():
            assert got[metric]["n"] == st["n"] and got[metric]["max"] == st["max"], metric
            assert close(got[metric]["mean"], st["mean"], rel_mean), metric
            for q in ("p50", "p95"):
                assert close(got[metric][q], st[q], rel_pct), (metric, q, got[metric][q], st[q])
    return summary


@pytest.mark.unit
def test_the_fixture_gives_the_numbers_it_gave_before():
    assert_same(DATA, rel_mean=1e-12, rel_pct=0.0)


@pytest.mark.e2e
def test_a_real_100_hz_recording_gives_the_same_numbers(recorded):
    summary = assert_same(recorded, rel_mean=1e-12, rel_pct=0.0)
    assert summary["samples"] > 100 and summary["complete"] and not summary["being_written"]


@pytest.mark.e2e
def test_a_recording_over_many_read_chunks_gives_the_same_numbers(recorded, tmp_path):
    """A real recording repeated (12 MB): every chunk boundary and carried GPU reading right.
    (Its copies repeat the same values, so the percentiles stay exact: the buckets are tested
    on their own below.)"""
    big = tmp_path / "big.json"
    longtrace.build(str(recorded), str(big), 12_000_000)
    summary = assert_same(big, rel_mean=1e-9, rel_pct=0.0)
    assert summary["samples"] > 15_000


SHAPES = {  # (on the text: a number parsed and written again could change its digits)
    "spaces": lambda t: t.replace('","', '", "').replace('":', '": '),
    "ts before tid": lambda t: re.sub(r'("tid":\d+),("ts":[\d.]+)', r"\2,\1", t),
    "no tid": lambda t: re.sub(r'"tid":\d+,', "", t),
    "args before ts": lambda t: re.sub(r'("ts":[\d.]+),("args":\{[^}]*\})\}', r"\2,\1}", t),
    "a key more": lambda t: t.replace('{"ph"', '{"cat":"x","ph"', 1),
}


@pytest.mark.e2e
@pytest.mark.parametrize("shape", SHAPES)
def test_counter_lines_in_another_shape_are_read_as_json(recorded, tmp_path, shape):
    """Only the writer's exact shape takes the split fast path: a counter line with its keys in
    another order, spaces, no tid or a key more is read as JSON, to the same samples."""
    out, changed = [], 0
    for i, line in enumerate(recorded.read_text().splitlines(keepends=True)):
        if line.startswith(',{"ph":"C"') and i % 50 == 0:
            line = SHAPES[shape](line)
            changed += 1
        out.append(line)
    odd = tmp_path / "odd.json"
    odd.write_text("".join(out))
    with TraceStream(odd) as stream:
        streamed = list(samples(stream, decoder_for(stream.header)))
    assert changed > 10 and streamed == load(recorded).samples() == load(odd).samples()
    assert_same(odd, rel_mean=1e-12, rel_pct=0.0)


@pytest.mark.unit
def test_distribution_is_exact_then_within_the_error_and_bounded():
    rng = random.Random(3)
    few = [rng.choice([0.0, 12.5, 50.0, 99.5]) for _ in range(5000)]
    d = stats.Distribution()
    for v in few:
        d.add(v)
    ordered = sorted(few)
    assert d.exact and d.n == 5000 and d.max == 99.5
    assert d.percentile(50) == rates.percentile(ordered, 50)
    assert d.percentile(95) == rates.percentile(ordered, 95)
    many = [rng.lognormvariate(5, 2) for _ in range(50_000)] + [0.0, -3.0]
    d = stats.Distribution()
    for v in many:
        d.add(v)
    ordered = sorted(many)
    assert not d.exact and len(d._counts) < 20_000 and d.n == len(many) and d.max == max(many)
    for q in (1, 50, 95, 99):
        assert math.isclose(d.percentile(q), rates.percentile(ordered, q), rel_tol=stats.RELATIVE_ERROR)
    assert math.isclose(d.mean, sum(many) / len(many), rel_tol=1e-9)


@pytest.mark.unit
def test_thinned_points_stay_bounded_and_evenly_spaced():
    t = stats.Thinned(100)
    for i in range(10_000):
        t.add(i)
    assert 50 <= len(t.items) <= 100 and t.items[0] == 0
    gaps = {b - a for a, b in zip(t.items, t.items[1:])}
    assert gaps == {t.stride}
    short = stats.Thinned(100)
    for i in range(100):
        short.add(i)
    assert short.items == list(range(100))


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.unit
def test_progress_only_on_a_terminal_after_a_second_and_cleared():
    now = [0.0]
    out = Tty()
    bar = Progress(300_000_000, "gputop report: reading t.json", out, clock=lambda: now[0])
    bar(1_000_000)
    assert out.getvalue() == ""  # under a second: nothing
    now[0] = 1.5
    bar(150_000_000)
    assert "50 %" in out.getvalue() and "of 300 MB" in out.getvalue() and "\n" not in out.getvalue()
    bar.clear()
    assert out.getvalue().endswith("\r\x1b[K")
    piped = io.StringIO()
    bar = Progress(300_000_000, "x", piped, clock=lambda: now[0])
    now[0] = 10.0
    bar(1)
    bar.clear()
    assert piped.getvalue() == ""


@pytest.mark.e2e
def test_report_not_on_a_terminal_writes_only_its_output(recorded):
    out, err = io.StringIO(), io.StringIO()
    ns = argparse.Namespace(trace=str(recorded), json=True, no_chart=True)
    assert report.run(ns, Environment.of("report", stdout=out, stderr=err)) == 0
    assert err.getvalue() == "" and json.loads(out.getvalue())["samples"] > 100


@pytest.mark.e2e
def test_a_trace_still_being_written_is_told_apart_from_a_cut_one(tmp_path):
    """#12.17: a trace whose recorder is still running was called 'did not finish cleanly'."""
    out = tmp_path / "live.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gputop", "record", "--out", str(out), "--interval", "0.05"],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.read_text().count("cpu_util_pct") < 5):
            time.sleep(0.1)
        done = subprocess.run(
            [sys.executable, "-m", "gputop", "report", str(out), "--no-chart"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert f"still being written (its recorder, pid {proc.pid}, is running" in done.stdout
        assert "did not finish cleanly" not in done.stdout
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    done = subprocess.run([sys.executable, "-m", "gputop", "report", str(out), "--json"], capture_output=True, text=True, timeout=60)
    doc = json.loads(done.stdout)
    assert doc["complete"] is False and doc["being_written"] is False
    text = subprocess.run(
        [sys.executable, "-m", "gputop", "report", str(out), "--no-chart"], capture_output=True, text=True, timeout=60
    ).stdout
    assert "did not finish cleanly" in text and "still being written" not in text


@pytest.mark.e2e
def test_help_states_the_percentiles_error():
    done = subprocess.run([sys.executable, "-m", "gputop", "report", "--help"], capture_output=True, text=True, timeout=60)
    assert "exact while a metric has at most 4,096 distinct values" in done.stdout
    assert "within 0.1 % of the exact value" in done.stdout
