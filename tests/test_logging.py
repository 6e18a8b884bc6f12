"""Logging, configured once by cli.main: warnings on stderr as one line of their own, debug with
GPUTOP_LOG=debug or --debug, a file while a full-screen view runs, a bad level refused."""

from __future__ import annotations

import io
import logging
import os
import pathlib
import subprocess
import sys

import pytest

from gputop import console

TESTS = pathlib.Path(__file__).resolve().parent


def gputop(
    *args: str, fake: str | None = None, extra_env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("GPUTOP_FAKE_NVML", None)
    env.pop(console.LOG_ENV, None)
    if fake is not None:
        env["GPUTOP_FAKE_NVML"] = fake
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS / "sitecustom"), str(TESTS), env.get("PYTHONPATH", "")])
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "gputop", *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture
def restore_gputop_logger():
    root = logging.getLogger("gputop")
    saved = (list(root.handlers), root.level, root.propagate)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    root.propagate = saved[2]


@pytest.mark.e2e
def test_a_gpu_lost_mid_recording_is_one_warning_line(tmp_path):
    out = gputop("record", "--out", str(tmp_path / "t.json"), "--interval", "0.1", "--duration", "1.5", fake="H100_SXM+lost_after=3")
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if ": warning: " in line]
    assert len(warnings) == 1, out.stderr
    assert warnings[0].startswith("gputop record: warning: GPU 0 ") and "lost" in warnings[0]


@pytest.mark.e2e
def test_debug_lines_appear_only_when_asked(tmp_path):
    """A function the driver lacks is logged at debug level, once (sources/nvml/query)."""
    quiet = gputop("snapshot", fake="H100_SXM:old_driver")
    loud = gputop("snapshot", fake="H100_SXM:old_driver", extra_env={console.LOG_ENV: "debug"})
    flag = gputop("--debug", "snapshot", fake="H100_SXM:old_driver")
    assert quiet.returncode == loud.returncode == flag.returncode == 0
    assert ": debug: " not in quiet.stderr
    for run in (loud, flag):
        debug = [line for line in run.stderr.splitlines() if line.startswith("gputop snapshot: debug: NVML: ")]
        assert debug, run.stderr
        assert len(debug) == len(set(debug))  # each missing function once


@pytest.mark.e2e
def test_a_level_that_does_not_exist_is_refused():
    out = gputop("snapshot", extra_env={console.LOG_ENV: "loud"})
    assert out.returncode == 2
    assert out.stderr.strip().startswith("gputop: error: GPUTOP_LOG='loud' names no level")
    assert "Traceback" not in out.stderr


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.unit
def test_on_a_terminal_a_warning_clears_the_progress_line_first(restore_gputop_logger):
    stream = _Tty()
    stream.write("recording t.json  1.0 s  10 samples")  # a progress line, drawn without a newline
    console.configure_logging("gputop record", logging.WARNING, stderr=stream, full_screen=False)
    logging.getLogger("gputop.sources.nvml").warning("GPU %d lost", 1)
    logging.getLogger("gputop.sources.nvml").info("not shown at the warning level")
    text = stream.getvalue()
    assert text.endswith(console.CLEAR_LINE + "gputop record: warning: GPU 1 lost\n")
    assert "not shown" not in text


@pytest.mark.unit
def test_under_a_full_screen_view_records_go_to_the_log_file(tmp_path, monkeypatch, restore_gputop_logger):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    stderr = io.StringIO()
    console.configure_logging("gputop", logging.DEBUG, stderr=stderr, full_screen=True)
    path = pathlib.Path(console.log_path())
    assert path == tmp_path / "gputop" / "gputop.log" and not path.exists()  # none for a quiet run
    logging.getLogger("gputop.sources.nvml").warning("GPU %d lost", 0)
    logging.getLogger("gputop.sources.nvml").debug("a debug line")
    for handler in logging.getLogger("gputop").handlers:
        handler.flush()
    lines = path.read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "WARNING gputop.sources.nvml: GPU 0 lost",
        "DEBUG gputop.sources.nvml: a debug line",
    ]
    assert stderr.getvalue() == ""


@pytest.mark.e2e
def test_the_help_says_where_the_log_goes():
    out = gputop("--help")
    assert "GPUTOP_LOG=debug" in out.stdout and "gputop.log" in out.stdout
