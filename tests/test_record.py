"""`gputop record`: in process with a stub sampler, and as a real subprocess killed mid-run."""

from __future__ import annotations

import argparse
import errno
import io
import json
import os
import pathlib
import resource
import signal
import subprocess
import sys
import time

import pytest

import traceval
from gputop import trace
from gputop.commands import record
from gputop.environment import Environment
from gputop.model import Sample
from helpers import make_samples

TESTS = pathlib.Path(__file__).resolve().parent
RECORD = [sys.executable, "-m", "gputop", "record"]


class StubSampler:
    """Hands out known samples, stamped now (the recorder does not care where they come from)."""

    gpu_interval_s = 0.0

    def __init__(self, template: list[Sample]) -> None:
        self.template = template
        self.given: list[Sample] = []
        self.closed = False

    def sample(self) -> Sample:
        base = self.template[len(self.given) % len(self.template)]
        s = Sample(ts_ns=time.time_ns(), cpu=base.cpu, gpus=base.gpus)
        self.given.append(s)
        return s

    def close(self) -> None:
        self.closed = True


def args(out, interval=0.01, duration=0.05, force=False) -> argparse.Namespace:
    return argparse.Namespace(out=str(out), interval=interval, duration=duration, force=force)


@pytest.mark.unit
def test_record_with_a_stub_sampler_round_trips(tmp_path):
    stub = StubSampler(make_samples())
    assert record.run(args(tmp_path / "t.json"), Environment.of("record", sampler=stub)) == 0
    assert not stub.closed  # the caller's sampler is the caller's to close
    text = (tmp_path / "t.json").read_text()
    traceval.assert_valid(text, strict=True)
    loaded = trace.load(tmp_path / "t.json")
    assert loaded.settings["interval_s"] == 0.01 and loaded.settings["duration_s"] == 0.05
    assert loaded.samples() == stub.given
    assert 4 <= len(stub.given) <= 6  # deadlines 0, 10, ..., 50 ms; a late one is skipped


@pytest.mark.unit
@pytest.mark.parametrize(
    "setup, words",
    [
        ("exists", "exists (use --force"),
        ("no_dir", "cannot write"),
        ("is_dir", "is a directory"),
    ],
)
def test_bad_output_is_one_line_before_any_sampling(tmp_path, capsys, setup, words):
    out = {"exists": tmp_path / "t.json", "no_dir": tmp_path / "nope" / "t.json", "is_dir": tmp_path}[setup]
    if setup == "exists":
        out.write_text("keep me")
    stub = StubSampler(make_samples())
    assert record.run(args(out), Environment.of("record", sampler=stub)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gputop record: error:") and words in err
    assert stub.given == []
    if setup == "exists":
        assert out.read_text() == "keep me"


@pytest.mark.unit
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_directory(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert record.run(args(locked / "t.json"), Environment.of("record", sampler=StubSampler(make_samples()))) == 1
    assert "Permission denied" in capsys.readouterr().err


@pytest.mark.unit
def test_force_overwrites(tmp_path):
    out = tmp_path / "t.json"
    out.write_text("old")
    stub = StubSampler(make_samples())
    assert record.run(args(out, force=True), Environment.of("record", sampler=stub)) == 0
    assert trace.load(out).samples() == stub.given


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.unit
def test_progress_line_only_on_a_terminal(tmp_path):
    tty = Tty()
    assert record.run(args(tmp_path / "a.json"), Environment.of("record", sampler=StubSampler(make_samples()), stderr=tty)) == 0
    shown = tty.getvalue()
    assert "samples" in shown and "a.json" in shown and shown.endswith("\n")
    pipe = io.StringIO()
    assert record.run(args(tmp_path / "b.json"), Environment.of("record", sampler=StubSampler(make_samples()), stderr=pipe)) == 0
    assert pipe.getvalue() == ""


# ---------------------------------------------------------------------------------------------
# A real recorder process


def _env(fake: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GPUTOP_FAKE_NVML", None)
    if fake:
        env["GPUTOP_FAKE_NVML"] = fake
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS / "sitecustom"), str(TESTS), env.get("PYTHONPATH", "")])
    return env


def _fake_available() -> bool:
    try:
        import fakenvml
    except ImportError:
        return False
    return hasattr(fakenvml, "install_from_spec")


FAKES = [None, pytest.param("H100_SXM", marks=pytest.mark.skipif(not _fake_available(), reason="no NVML fake yet"))]


def _start(out: pathlib.Path, fake: str | None, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*RECORD, "--out", str(out), "--interval", "0.01", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(fake),
    )


def _wait_for_samples(out: pathlib.Path, proc: subprocess.Popen, n: int = 10, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists() and out.read_bytes().count(b"core0.core_util_pct") >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("the recorder wrote no samples")


@pytest.mark.e2e
@pytest.mark.parametrize("fake", FAKES)
def test_sigkill_mid_run_leaves_a_trace_that_loads(tmp_path, fake):
    out = tmp_path / "t.json"
    proc = _start(out, fake)
    _wait_for_samples(out, proc)
    proc.kill()
    proc.communicate(timeout=10)
    text = out.read_text()
    report = traceval.assert_valid(text)  # whole events only: chrome://tracing opens it too
    assert not report.closed
    json.loads(text + "]")
    loaded = trace.load(out)
    samples = loaded.samples()
    assert not loaded.complete and len(samples) >= 10
    if fake:
        assert samples[-1].gpus[0].info.sm_count == 132 and samples[-1].gpus[0].power_w is not None


@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("fake", FAKES)
def test_sigterm_and_ctrl_c_finish_a_strictly_valid_file(tmp_path, fake, sig):
    out = tmp_path / "t.json"
    proc = _start(out, fake)
    _wait_for_samples(out, proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert stdout == "" and stderr == ""  # not a terminal: quiet
    text = out.read_text()
    json.loads(text)
    traceval.assert_valid(text, strict=True)
    assert trace.load(out).complete


@pytest.mark.e2e
def test_duration_at_100_hz_without_drift(tmp_path):
    out = tmp_path / "t.json"
    proc = subprocess.run(
        [*RECORD, "--out", str(out), "--interval", "0.01", "--duration", "1"], capture_output=True, text=True, env=_env(None), timeout=30
    )
    assert proc.returncode == 0 and proc.stderr == ""
    samples = trace.load(out).samples()
    span = (samples[-1].ts_ns - samples[0].ts_ns) / 1e9
    assert 0.98 <= span <= 1.05  # the last deadline is start + 1 s, not pushed back by slow ticks
    assert len(samples) >= 80  # 101 deadlines; a few may be skipped on a loaded machine


@pytest.mark.e2e
def test_cli_errors_are_one_line(tmp_path):
    (tmp_path / "t.json").write_text("x")
    for argv in (["--out", str(tmp_path / "t.json")], ["--out", str(tmp_path / "t2.json"), "--interval", "0"], ["--interval", "1"]):
        proc = subprocess.run([*RECORD, *argv], capture_output=True, text=True, env=_env(None), timeout=30)
        assert proc.returncode in (1, 2)
        assert proc.stderr.count("\n") == 1 and "error" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.e2e
def test_headless_modules_import_neither_textual_torch_nor_plotext():
    code = (
        "import sys, gputop.commands.record, gputop.commands.report, gputop.trace\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'textual', 'torch', 'plotext'})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _file_size_limit(limit: int):
    def apply() -> None:  # in the child: writes past the limit fail with EFBIG (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.e2e
def test_a_full_disk_is_one_line_exit_1_and_the_trace_still_loads(tmp_path):
    # a file that cannot grow (the size limit stands in for a full disk, as ENOSPC does): the
    # clean-up must not write the closing ] again into it (it gave a traceback after the error line)
    out = tmp_path / "t.json"
    proc = subprocess.run(
        [*RECORD, "--out", str(out), "--interval", "0.01", "--duration", "30"],
        capture_output=True,
        text=True,
        env=_env("H100_SXM*8"),
        timeout=60,
        preexec_fn=_file_size_limit(64 * 1024),
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gputop record: error: writing ") and "failed after" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert out.stat().st_size <= 64 * 1024
    loaded = trace.load(out)  # cut where the limit cut it, and readable as such
    assert not loaded.complete and len(loaded.samples()) >= 1


@pytest.mark.unit
def test_after_a_failed_write_close_appends_nothing(tmp_path, monkeypatch):
    out = tmp_path / "t.json"
    first, second = make_samples(2)
    writer = trace.TraceWriter.create(str(out))
    writer.write_sample(first)
    written = out.read_bytes()

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError):
        writer.write_sample(second)
    writer.close()  # no second OSError from writing the closing ] into a full disk
    assert writer.closed and out.read_bytes() == written
