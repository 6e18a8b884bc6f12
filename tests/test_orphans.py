"""No orphans: however gputop ends (q, SIGTERM, SIGINT, even SIGKILL), the workload it launched
ends too. The live view runs for real under a pseudo-terminal (pty.fork) with the NVML fake;
`gputop record --run` as a plain subprocess.

"Gone" means no live process in the workload's process group: a zombie (already dead, waiting
for whichever process adopted it to reap it) does not count.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import pty
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import threading
import time

import pytest

from helpers import ROOT, child_env, cleanup, job, live_members, read_pgid, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's")]


class Tui:
    """``gputop --run JOB`` on a pseudo-terminal, its output drained by a thread."""

    def __init__(self, job_path: str) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: become gputop
            os.chdir(ROOT)
            os.execve(sys.executable, [sys.executable, "-m", "gputop", "--run", job_path], child_env())
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.pid, self.fd = pid, fd
        self.output = bytearray()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO once the child has gone
                return
            if not chunk:
                return
            self.output += chunk

    def wait_drawn(self) -> None:
        wait_for(lambda: b"quit" in self.output, 60, "the live view to draw its footer")

    def wait_exit(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        return None

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


@pytest.mark.parametrize(
    "how, code",
    [
        ("q", 0),
        # a stop signal is the live view's clean way out too, as for record and serve (see --help)
        ("SIGTERM", 0),
        ("SIGINT", 0),
        ("SIGHUP", 0),
    ],
)
def test_the_live_view_stops_the_workload_group(tmp_path, how, code):
    job_path, pidfile = job(tmp_path, grandchild=True)
    tui = Tui(job_path)
    try:
        pgid = read_pgid(pidfile, members=2)
        tui.wait_drawn()
        if how == "q":
            os.write(tui.fd, b"q")
        else:
            os.kill(tui.pid, getattr(signal, how))
        exited = tui.wait_exit(15)
        assert exited is not None, "gputop did not exit"
        assert exited == code
        wait_for(lambda: not live_members(pgid), 10, f"group {pgid} to end: {live_members(pgid)}")
    finally:
        tui.close()
        cleanup(pidfile)


@pytest.mark.parametrize("when", ["starting", "quitting"])
@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_a_stop_signal_while_the_view_starts_or_quits_still_ends_everything(tmp_path, how, when):
    """The races: a signal before Textual has drawn anything (just after the workload started),
    or while it is already quitting (q pressed, the workload being stopped)."""
    job_path, pidfile = job(tmp_path, grandchild=True)
    tui = Tui(job_path)
    try:
        pgid = read_pgid(pidfile, members=2)
        if when == "quitting":
            tui.wait_drawn()
            os.write(tui.fd, b"q")
        os.kill(tui.pid, getattr(signal, how))
        exited = tui.wait_exit(15)
        assert exited is not None, "gputop did not exit"
        assert exited == 0
        wait_for(lambda: not live_members(pgid), 10, f"group {pgid} to end: {live_members(pgid)}")
    finally:
        tui.close()
        cleanup(pidfile)


def test_a_sigkilled_live_view_leaves_no_workload_behind(tmp_path):
    """gputop cannot run any code when SIGKILLed: the kernel sends the workload SIGTERM
    (PR_SET_PDEATHSIG); the processes it started itself are the watchdog's (test below)."""
    job_path, pidfile = job(tmp_path, grandchild=False)
    tui = Tui(job_path)
    try:
        pgid = read_pgid(pidfile, members=1)
        tui.wait_drawn()
        os.kill(tui.pid, signal.SIGKILL)
        assert tui.wait_exit(10) == -signal.SIGKILL
        wait_for(lambda: not live_members(pgid), 10, f"group {pgid} to end: {live_members(pgid)}")
    finally:
        tui.close()
        cleanup(pidfile)


def workers_job(tmp_path: pathlib.Path) -> tuple[str, pathlib.Path]:
    """#26.6's job: one multiprocessing.Process and one subprocess.Popen of its own, then sleeps."""
    pidfile = tmp_path / "pgid"
    path = tmp_path / "forever.py"
    path.write_text(
        textwrap.dedent(f"""\
        import multiprocessing, os, subprocess, time

        def work():
            time.sleep(1000)

        if __name__ == "__main__":
            worker = multiprocessing.Process(target=work)
            worker.start()
            sleeper = subprocess.Popen(["sleep", "1000"])
            with open({str(pidfile)!r} + ".tmp", "w") as f:
                f.write(str(os.getpgid(0)))
            os.rename({str(pidfile)!r} + ".tmp", {str(pidfile)!r})
            time.sleep(1000)
    """)
    )
    return str(path), pidfile


@pytest.mark.parametrize("view", ["live", "record"])
def test_a_sigkilled_gputop_leaves_not_even_the_job_s_own_children_behind(tmp_path, view):
    """The OOM killer's SIGKILL: gputop runs no code, the kernel's PDEATHSIG reaches the script
    alone, and its worker and its sleep were re-parented to init and lived on (#26.6). The
    watchdog ends the group: SIGTERM, then SIGKILL after its grace."""
    job_path, pidfile = workers_job(tmp_path)
    if view == "live":
        tui = Tui(job_path)
        pid = tui.pid
    else:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gputop", "record", "--out", str(tmp_path / "t.json"), "--interval", "0.1", "--run", job_path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=child_env(),
        )
        pid = proc.pid
    try:
        pgid = read_pgid(pidfile, members=3)  # the script, its worker, its sleep (and maybe a resource tracker)
        if view == "live":
            tui.wait_drawn()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not live_members(pgid), 15, f"group {pgid} to end: {live_members(pgid)}")
    finally:
        if view == "live":
            tui.close()
        elif proc.poll() is None:
            proc.kill()
            proc.wait()
        cleanup(pidfile)


def test_a_clean_stop_releases_the_watchdog_without_a_signal(tmp_path):
    """The watchdog is gputop's child only while the group lives: after a clean stop no shell
    of it is left, so nothing can signal the group's (reusable) pgid later."""
    from gputop.workload.process import ProcessGroup

    group = ProcessGroup()
    group.spawn([sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ), None)
    watchdog = group._watchdog.proc
    assert watchdog is not None and watchdog.poll() is None
    group.terminate(2.0)
    group.note_gone()
    assert group.gone and watchdog.returncode == 0  # it read "done" and left: no kill was sent


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGHUP", "SIGKILL"])
def test_record_run_leaves_no_workload_behind(tmp_path, how):
    job_path, pidfile = job(tmp_path, grandchild=how != "SIGKILL")
    out = tmp_path / "t.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gputop", "record", "--out", str(out), "--interval", "0.1", "--run", job_path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        pgid = read_pgid(pidfile, members=1 if how == "SIGKILL" else 2)
        proc.send_signal(getattr(signal, how))
        _, err = proc.communicate(timeout=15)
        if how == "SIGKILL":
            assert proc.returncode == -signal.SIGKILL
        else:
            assert proc.returncode == 0, err
            assert err.splitlines()[-1] == f"gputop record: workload job.py stopped by gputop on {how} (no steps reported)"
            assert out.read_text().endswith("]\n")  # closed cleanly
        wait_for(lambda: not live_members(pgid), 10, f"group {pgid} to end: {live_members(pgid)}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cleanup(pidfile)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP"])
def test_compare_stops_its_workload_when_it_is_told_to_stop(tmp_path, how):
    """SIGTERM's and SIGHUP's defaults would end compare without stopping the run under way."""
    job_path, pidfile = job(tmp_path, grandchild=True, takes_device=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gputop", "compare", job_path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env()
    )
    try:
        pgid = read_pgid(pidfile, members=2)
        proc.send_signal(getattr(signal, how))
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 128 + getattr(signal, how), err
        assert err.splitlines()[-1] == f"gputop compare: stopped by {how}" and "Traceback" not in err
        wait_for(lambda: not live_members(pgid), 10, f"group {pgid} to end: {live_members(pgid)}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cleanup(pidfile)
