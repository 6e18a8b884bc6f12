"""gputop merge: a recording and a PyTorch profiler trace on one timeline."""

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

import longtrace
from gputop import trace
from traceval import assert_valid

pytestmark = pytest.mark.e2e

DATA = pathlib.Path(__file__).parent / "data"
RECORDING = DATA / "h100_fake.json"
REAL_TORCH = DATA / "torch_cpu_profile.json"  # exported by torch 2.13's profiler (CPU)


def merge(*args):
    return subprocess.run([sys.executable, "-m", "gputop", "merge", *map(str, args)], capture_output=True, text=True, timeout=60)


def torch_like(base_ns: int, ops: list[tuple[float, float]]) -> dict:
    """The shape torch.profiler exports: object form, ts relative to baseTimeNanoseconds."""
    events = [{"ph": "M", "name": "process_name", "pid": 4242, "tid": 0, "args": {"name": "python"}}]
    events += [
        {"ph": "X", "cat": "cpu_op", "name": f"aten::mm#{i}", "pid": 4242, "tid": 4242, "ts": ts, "dur": dur}
        for i, (ts, dur) in enumerate(ops)
    ]
    return {"schemaVersion": 1, "traceEvents": events, "baseTimeNanoseconds": base_ns}


def test_profiler_ops_land_inside_the_recording(tmp_path):
    rec = trace.load(RECORDING)
    start_us = min(float(e["ts"]) for e in rec.events if e.get("ph") == "C")
    base_ns = int(start_us * 1000) - 5_000_000_000  # the profiler's base: 5 s before the recording
    theirs = tmp_path / "torch.json"
    theirs.write_text(json.dumps(torch_like(base_ns, [(5_000_100.5, 250.0), (5_000_900.0, 40.0)])))
    out = tmp_path / "merged.json"
    done = merge(RECORDING, theirs, "--out", out)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # overlapping: no warning
    text = out.read_text()
    json.loads(text)  # strict JSON
    assert_valid(text, strict=True)
    merged = trace.load(out)  # still a gputop trace: header first
    assert merged.samples() == rec.samples()
    ops = [e for e in merged.events if e.get("cat") == "cpu_op"]
    assert [round(float(e["ts"]) - start_us, 1) for e in ops] == [100.5, 900.0]


def test_disjoint_traces_merge_with_a_warning():
    out = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / f"gputop-merge-{os.getpid()}.json"
    try:
        done = merge(RECORDING, REAL_TORCH, "--out", out, "--force")
        assert done.returncode == 0, done.stderr
        assert "do not overlap in time" in done.stderr and len(done.stderr.splitlines()) == 1
        assert any(e.get("name") == "aten::mm" for e in trace.load(out).events)
    finally:
        out.unlink(missing_ok=True)


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "not JSON"),
        ('{"a": 1}', "not a chrome trace"),
        ('{"traceEvents": [], "baseTimeNanoseconds": "x"}', "not an integer"),
    ],
)
def test_bad_profiler_trace_is_one_line(tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    done = merge(RECORDING, bad, "--out", tmp_path / "o.json")
    assert done.returncode == 1 and message in done.stderr
    assert len(done.stderr.splitlines()) == 1 and not (tmp_path / "o.json").exists()


def test_refuses_to_overwrite_and_reports_missing_files(tmp_path):
    out = tmp_path / "o.json"
    out.write_text("keep me")
    done = merge(RECORDING, REAL_TORCH, "--out", out)
    assert done.returncode == 1 and "--force" in done.stderr and out.read_text() == "keep me"
    done = merge(tmp_path / "missing.json", REAL_TORCH, "--out", tmp_path / "p.json")
    assert done.returncode == 1 and "cannot read" in done.stderr and "Traceback" not in done.stderr


PROFILE = """
import sys, torch
from torch.profiler import profile, ProfilerActivity
with profile(activities=[ProfilerActivity.CPU]) as p:
    a = torch.randn(128, 128)
    for _ in range(5):
        a = a @ a
p.export_chrome_trace(sys.argv[1])
"""


def test_real_profiler_during_a_real_recording_shares_its_clock(tmp_path):
    """The claim the merge rests on: Kineto's ts + baseTimeNanoseconds is time.time_ns()."""
    pytest.importorskip("torch")
    rec, prof, out = tmp_path / "rec.json", tmp_path / "prof.json", tmp_path / "merged.json"
    recorder = subprocess.Popen(
        [sys.executable, "-m", "gputop", "record", "--out", str(rec), "--interval", "0.05", "--duration", "60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.5)
        subprocess.run([sys.executable, "-c", PROFILE, str(prof)], check=True, timeout=120, capture_output=True)
        time.sleep(0.5)
    finally:
        recorder.terminate()
        recorder.wait(30)
    done = merge(rec, prof, "--out", out)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    merged = trace.load(out)
    counters = [float(e["ts"]) for e in merged.events if e.get("ph") == "C"]
    ops = [float(e["ts"]) for e in merged.events if e.get("name") == "aten::mm"]
    assert len(ops) == 5
    assert min(counters) < min(ops) and max(ops) < max(counters)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_merged_file_has_a_new_files_mode_and_force_keeps_the_old_one(tmp_path):
    """#12.12: the merged file was left 0600 (mkstemp's), and --force turned a 0644 file 0600."""
    out = tmp_path / "merged.json"
    done = merge(RECORDING, REAL_TORCH, "--out", out)
    assert done.returncode == 0, done.stderr
    assert oct(out.stat().st_mode & 0o777) == oct(0o644 & ~_umask())
    out.chmod(0o640)
    done = merge(RECORDING, REAL_TORCH, "--out", out, "--force")
    assert done.returncode == 0, done.stderr
    assert oct(out.stat().st_mode & 0o777) == oct(0o640)


def test_success_says_what_was_written(tmp_path):
    """#12.12: merge printed nothing on success."""
    out = tmp_path / "merged.json"
    done = merge(RECORDING, REAL_TORCH, "--out", out)
    assert done.returncode == 0, done.stderr
    samples = len(trace.load(RECORDING).samples())
    assert done.stdout.startswith(f"gputop merge: wrote {out}: {samples} samples and ")
    assert done.stdout.count("\n") == 1 and "of the profiler" in done.stdout


def test_a_recording_cut_before_its_first_sample_is_refused(tmp_path):
    """#12.12: merge exited 0 on a recording that report says has no complete sample."""
    lines = RECORDING.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.json"
    cut.write_text("".join(line for line in lines if line.startswith(("[", ',{"ph":"M"'))))
    out = tmp_path / "merged.json"
    done = merge(cut, REAL_TORCH, "--out", out)
    assert done.returncode == 1 and done.stderr.startswith("gputop merge: error: ")
    assert "no complete sample" in done.stderr and len(done.stderr.splitlines()) == 1
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["cut.json"]
    report = subprocess.run([sys.executable, "-m", "gputop", "report", str(cut)], capture_output=True, text=True, timeout=60)
    assert report.returncode == 1 and "no complete sample" in report.stderr


def merged_long(tmp_path, build, recording, profile):
    """(the long input ``build`` made, the merge's run, the merged trace loaded)."""
    big = tmp_path / "big.json"
    build(str(recording or profile), str(big), 3_000_000)
    out = tmp_path / "merged.json"
    done = merge(recording and big or RECORDING, profile and big or REAL_TORCH, "--out", out)
    assert done.returncode == 0, done.stderr
    return big, done, trace.load(out)


def test_a_long_recording_merges_to_the_same_events(tmp_path):
    """The streamed merge copies every event of a recording that spans many read chunks."""
    big, _, merged = merged_long(tmp_path, longtrace.build, RECORDING, None)
    source = trace.load(big)
    assert merged.samples() == source.samples()

    def ours(events):
        return [e for e in events if isinstance(e.get("pid"), int) and e["pid"] >= trace.CPU_PID]

    assert ours(merged.events) == ours(source.events) and len(ours(source.events)) > 20_000


def test_a_long_profile_is_streamed_to_the_same_events(tmp_path):
    """A profiler trace over many read chunks (trace.chrome): every event, shifted as before."""
    big, done, loaded = merged_long(tmp_path, longtrace.build_torch, None, REAL_TORCH)
    doc = json.loads(big.read_bytes())
    base_us = doc["baseTimeNanoseconds"] / 1000
    want = [{**e, "ts": round(e["ts"] + base_us, 3)} for e in doc["traceEvents"] if e["ph"] != "M"]
    merged = [
        e for e in loaded.events if e.get("ph") != "M" and not (isinstance(e.get("pid"), int) and e["pid"] >= trace.CPU_PID)
    ]  # not gputop's
    assert merged == want and len(want) > 10_000
    assert f"{len(doc['traceEvents']):,} of the profiler" in done.stdout
