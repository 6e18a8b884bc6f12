"""What a launched job's processes use: per process CPU %, threads, resident memory and the cores
its threads ran on over the last interval, and the main thread's CPU %, read from ``/proc``
(``/proc/PID/stat`` and ``/proc/PID/task/TID/stat``; Linux only: elsewhere nothing is known).

A thread "ran on" a core over an interval when it used CPU time in it; the core is the
``processor`` field (where it last ran), and the thread's CPU time of the interval is counted on
that core (``core_cpu_s``: where a job's CPU time went, against the CPUs near its GPU). The
first reading of a process has no interval before it: its CPU % is None and its cores empty
(n/a, never 0) until the second. Each thread's time on
a core and in the run queue come from ``/proc/PID/task/TID/schedstat`` (nanoseconds): "busy" is
both together, what a thread that never sleeps has whatever else shares the machine. Each
process's main thread (tid = pid: Python's, a rank's host thread) has its own two over the interval
(``main_run_s``, ``main_queued_s``): time queued is time it could have run and had no CPU
(contention, a cgroup's CPU quota, an affinity to busy cores).
"""

from __future__ import annotations

import os
import time
from typing import Callable, Collection, Iterable

from gputop.model import JobProcess, JobUsage

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# fields of /proc/PID/stat after "(comm)", 0 = field 3 of proc(5)
_PPID, _UTIME, _STIME, _THREADS, _RSS, _PROCESSOR = 1, 11, 12, 17, 21, 36


def _stat(path: str) -> tuple[str, list[str]] | None:
    """(comm, fields after comm) of a stat file; None where it is gone or unreadable."""
    try:
        with open(path, "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    head, sep, tail = raw.rpartition(")")
    if not sep:
        return None
    fields = tail.split()
    return (head.partition("(")[2], fields) if len(fields) > _PROCESSOR else None


def _ticks(fields: list[str]) -> int:
    return int(fields[_UTIME]) + int(fields[_STIME])


class JobWatch:
    """Reads the job's processes each ``read(pids)``; CPU % and cores over the time since the
    previous read."""

    def __init__(self, main_pid: int, clock: Callable[[], float] = time.monotonic, proc: str = "/proc") -> None:
        self.main_pid = main_pid
        self._clock = clock
        self._proc = proc
        self._last_at: float | None = None
        self._ticks: dict[int, int] = {}  # pid -> utime + stime at the last read
        self._task_ticks: dict[tuple[int, int], int] = {}  # (pid, tid) -> ticks
        self._sched: dict[tuple[int, int], tuple[int, int]] = {}  # (pid, tid) -> (on-core ns, queued ns)

    def read(self, pids: Iterable[int], ranks: Collection[int] = ()) -> JobUsage | None:
        """The job's use since the last read; None where /proc cannot be read (not Linux).
        ``ranks``: the pids known to be ranks of a distributed job (their children are workers)."""
        if not os.path.isdir(self._proc):
            return None
        now = self._clock()
        interval = None if self._last_at is None else now - self._last_at
        ticks: dict[int, int] = {}
        task_ticks: dict[tuple[int, int], int] = {}
        processes = []
        sched: dict[tuple[int, int], tuple[int, int]] = {}
        busy_ns = 0
        core_ticks: dict[int, int] = {}  # CPU ticks of the interval, by the core each thread ran on
        main_times: dict[int, tuple[float, float]] = {}  # pid -> its main thread's (on a core, queued) s
        for pid in sorted(pids):
            stat = _stat(f"{self._proc}/{pid}/stat")
            if stat is None:
                continue
            comm, fields = stat
            ticks[pid] = _ticks(fields)
            cores: set[int] = set()
            tasks = self._tasks(pid)
            for tid in tasks:
                task = _stat(f"{self._proc}/{pid}/task/{tid}/stat")
                if task is None:
                    continue
                now_ticks = task_ticks[(pid, tid)] = _ticks(task[1])
                before = self._task_ticks.get((pid, tid))
                # a thread first seen after the first read was born in the interval
                ran = now_ticks - before if before is not None else now_ticks if self._last_at is not None else None
                if ran:
                    core = int(task[1][_PROCESSOR])
                    cores.add(core)
                    core_ticks[core] = core_ticks.get(core, 0) + ran
                times = _schedstat(f"{self._proc}/{pid}/task/{tid}/schedstat")
                was = self._sched.get((pid, tid))
                if times is None:
                    continue
                sched[(pid, tid)] = times
                on, queued = times[0] - (was or (0, 0))[0], times[1] - (was or (0, 0))[1]
                if was is None and self._last_at is None:
                    continue
                busy_ns += on + queued  # a thread born in the interval: all of its time is in it
                if pid == tid and was is not None and interval:
                    main_times[pid] = (on / 1e9, queued / 1e9)
            before = self._ticks.get(pid)
            cpu = None if before is None or not interval else 100.0 * (ticks[pid] - before) / _TICK / interval
            ppid = int(fields[_PPID])
            processes.append(
                JobProcess(
                    pid=pid,
                    name=comm,
                    role=role(pid, ppid, self.main_pid, ranks),
                    cpu_pct=cpu,
                    threads=int(fields[_THREADS]),
                    rss_bytes=int(fields[_RSS]) * _PAGE,
                    cores=frozenset(cores),
                    ppid=ppid,
                    main_run_s=main_times[pid][0] if pid in main_times else None,
                    main_queued_s=main_times[pid][1] if pid in main_times else None,
                )
            )
        busy = 100.0 * busy_ns / 1e9 / interval if interval and sched else None
        main = main_times.get(self.main_pid) if interval else None
        self._last_at, self._ticks, self._task_ticks, self._sched = now, ticks, task_ticks, sched
        known = [p.cpu_pct for p in processes if p.cpu_pct is not None]
        return JobUsage(
            cpu_pct=sum(known) if known else None,
            main_thread_cpu_pct=None if main is None or not interval else 100.0 * main[0] / interval,
            main_thread_busy_pct=None if main is None or not interval else min(100.0, 100.0 * (main[0] + main[1]) / interval),
            busy_pct=busy,
            rss_bytes=sum(p.rss_bytes for p in processes if p.rss_bytes is not None) if processes else None,
            cores=frozenset().union(*(p.cores for p in processes)),
            processes=tuple(processes),
            core_cpu_s=tuple((core, ticks / _TICK) for core, ticks in sorted(core_ticks.items())),
            interval_s=interval,
        )

    def _tasks(self, pid: int) -> list[int]:
        try:
            return [int(t) for t in os.listdir(f"{self._proc}/{pid}/task") if t.isdigit()]
        except OSError:
            return []


def role(pid: int, ppid: int, main_pid: int, ranks: Collection[int] = ()) -> str:
    """A process's part in the job: a rank, a worker (a child of the main process, or of a rank
    where the job has ranks: a launcher's other children are no workers), the main one, other."""
    if pid in ranks:
        return "rank"
    if ppid in ranks or (ppid == main_pid and main_pid in ranks):
        return "worker"
    if pid == main_pid:
        return "main"
    return "worker" if ppid == main_pid and not ranks else "other"


def _schedstat(path: str) -> tuple[int, int] | None:
    """(ns on a core, ns queued for one) of a thread."""
    try:
        with open(path) as f:
            on, queued, *_ = f.read().split()
        return int(on), int(queued)
    except (OSError, ValueError):
        return None
