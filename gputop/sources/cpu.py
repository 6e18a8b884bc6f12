"""The host: CPU cores (/proc/stat, or psutil off Linux), memory (/proc/meminfo, or psutil), load,
package power through RAPL powercap.

The only module that imports psutil. Core utilization is computed here from our own previous
per-core snapshot rather than with ``psutil.cpu_percent``: psutil keeps that function's previous
snapshot per calling thread, and the sampler runs on more than one thread (a pause and the
first sample start new ones), so psutil's answer would silently be "since some other tick".

CPU package power comes from the RAPL energy counters under ``/sys/class/powercap``
(``intel-rapl:N`` with ``name`` = ``package-N``; AMD exposes the same tree on newer kernels).
Reading ``energy_uj`` needs root on most kernels since 2020; where it can't be read the power is
``None``. What is readable is probed once, when the source is built.
"""

from __future__ import annotations

import os
import re
import time
import weakref
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, NamedTuple, Protocol, TypeVar

import psutil

from gputop.model import CpuSample

_PACKAGE_DIR = re.compile(r"intel-rapl:\d+$")  # top-level domains; intel-rapl:N:M are sub-domains

T = TypeVar("T")


class _Slow(NamedTuple):
    """The readings re-read only every few ticks."""

    freqs: tuple[float | None, ...]
    ram_used: int
    ram_total: int
    load1: float | None


@dataclass(frozen=True, slots=True)
class HostProcess:
    """What the host knows of one pid; ``None`` where a field can't be read."""

    name: str | None
    user: str | None
    command: str | None
    cpu_pct: float | None  # of one core (top's convention: 200 = two cores busy); None on first sight


PROC_STAT = "/proc/stat"
PROC_MEMINFO = "/proc/meminfo"


class _ProcStat:
    """Per-core (busy, total) jiffies straight from /proc/stat, through one descriptor kept open
    (a pread at offset 0 regenerates the file). At 100 Hz this is most of the host's sample, and
    it costs half of ``psutil.cpu_times(percpu=True)`` (measured ~70 vs ~150 us a tick, caches
    cold between ticks): no file object, no float division, no named tuples. Counted as
    ``_busy_total`` counts psutil's: iowait is idle, steal is busy, guest is inside user."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._size = 4096
        self._finalizer = weakref.finalize(self, os.close, fd)

    @classmethod
    def open(cls, path: str) -> _ProcStat | None:
        """The reader, or None where the file is missing or reads as no cores (not Linux)."""
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        stat = cls(fd)
        try:
            if stat.read():
                return stat
        except (OSError, ValueError):
            pass
        stat.close()
        return None

    def read(self) -> list[tuple[int, int]]:
        while True:
            data = os.pread(self._fd, self._size, 0)
            cores, complete = self._parse(data)
            if complete or len(data) < self._size:
                return cores
            self._size *= 2  # many cores: the per-core lines did not fit

    @staticmethod
    def _parse(data: bytes) -> tuple[list[tuple[int, int]], bool]:
        """(cores, complete): complete once a line after the per-core ones has begun (the
        ``intr`` line that follows can be huge, and need not fit: only its first bytes)."""
        cores: list[tuple[int, int]] = []
        lines = data.split(b"\n")
        for i, line in enumerate(lines[1:], 1):  # the aggregate "cpu" line first
            if not line.startswith(b"cpu"):
                return cores, bool(line) or i < len(lines) - 1
            if i == len(lines) - 1:  # a per-core line cut by the end of the read
                return cores, False
            values = [int(v) for v in line.split()[1:9]]  # user nice system idle iowait irq softirq steal
            if len(values) < 4:
                raise ValueError(f"not a /proc/stat cpu line: {line[:60]!r}")
            total = sum(values)
            cores.append((total - values[3] - (values[4] if len(values) > 4 else 0), total))
        return cores, False

    def close(self) -> None:
        self._finalizer()


class _CpuTimes(Protocol):
    """One core's ``scputimes`` (psutil): a tuple of seconds with named fields."""

    idle: float

    def __iter__(self) -> Iterator[float]: ...


def _busy_total(times: _CpuTimes) -> tuple[float, float]:
    """(busy, total) seconds of one ``scputimes``, counted as psutil and htop count them."""
    total = sum(times)
    # Linux counts guest time inside user/nice already; iowait is idle time.
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    busy = total - times.idle - getattr(times, "iowait", 0.0)
    return busy, total


def core_percents(prev: list[tuple[float, float]], cur: list[tuple[float, float]], last: tuple[float, ...]) -> tuple[float, ...]:
    """Per-core busy share between two (busy, total) snapshots, in percent.

    A core whose counters did not move (two reads within one kernel tick) keeps its ``last`` value.
    """
    out = []
    for i, ((b0, t0), (b1, t1)) in enumerate(zip(prev, cur)):
        dt = t1 - t0
        if dt <= 0:
            out.append(last[i] if i < len(last) else 0.0)
            continue
        out.append(min(100.0, max(0.0, (b1 - b0) / dt * 100.0)))
    return tuple(out)


class _Rapl:
    """Package energy counters; ``power_w()`` is the mean power since the previous call."""

    def __init__(self, root: str, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._packages: list[tuple[str, int]] = []  # (energy_uj path, max_energy_range_uj)
        self._prev: tuple[float, list[int]] | None = None
        try:
            entries = sorted(os.listdir(root))
        except OSError:
            return
        for entry in entries:
            domain = os.path.join(root, entry)
            if not _PACKAGE_DIR.match(entry) or not _read_text(domain, "name").startswith("package"):
                continue
            energy = os.path.join(domain, "energy_uj")
            try:
                max_range = int(_read_text(domain, "max_energy_range_uj"))
                _read_int(energy)  # probe: unreadable (not root) means no power at all
            except (OSError, ValueError):
                self._packages = []
                return
            self._packages.append((energy, max_range))

    @property
    def available(self) -> bool:
        return bool(self._packages)

    def power_w(self) -> float | None:
        if not self._packages:
            return None
        now = self._clock()
        try:
            energies = [_read_int(path) for path, _ in self._packages]
        except (OSError, ValueError):
            self._prev = None
            return None
        prev, self._prev = self._prev, (now, energies)
        if prev is None or now <= prev[0]:
            return None
        joules = 0.0
        for e0, e1, (_, max_range) in zip(prev[1], energies, self._packages):
            delta = e1 - e0
            if delta < 0:  # the counter wrapped around
                delta += max_range
            joules += delta / 1e6
        return joules / (now - prev[0])


def _read_text(directory: str, name: str) -> str:
    try:
        with open(os.path.join(directory, name)) as f:
            return f.read().strip()
    except OSError:
        return ""


def _read_int(path: str) -> int:
    with open(path, "rb") as f:
        return int(f.read())


class CpuSource:
    """Every core the OS shows, host memory, load and package power.

    Per-core utilization and package power are read every tick. Memory, core frequencies and
    the load average change on a scale of seconds, and reading them costs more than the
    utilization itself (/proc/meminfo, /proc/cpuinfo), so they are re-read at most every
    ``slow_interval_s`` and the last reading is carried in between: at 100 Hz that is most of
    the host's cost, at 1 Hz it changes nothing.
    """

    def __init__(
        self,
        powercap_root: str = "/sys/class/powercap",
        clock: Callable[[], float] = time.monotonic,
        slow_interval_s: float = 0.5,
        proc_stat: str | None = None,
    ) -> None:
        self._clock = clock
        self._slow_interval_s = slow_interval_s
        self._slow_at: float | None = None
        self._slow: _Slow | None = None
        self._stat = _ProcStat.open(PROC_STAT if proc_stat is None else proc_stat)
        self._prev = self._core_times()
        # Before the first delta: the average since boot, which is a real measurement.
        self._last_pct = tuple(min(100.0, 100.0 * b / t) if t > 0 else 0.0 for b, t in self._prev)
        self._rapl = _Rapl(powercap_root, clock)
        self._procs: dict[int, psutil.Process] = {}

    def close(self) -> None:
        """Close /proc/stat (also done when the source is collected). Idempotent."""
        if self._stat is not None:
            self._stat.close()

    @property
    def has_power(self) -> bool:
        """Whether RAPL package energy is readable here (root, and a kernel that exposes it)."""
        return self._rapl.available

    def _core_times(self) -> list[tuple[float, float]]:
        """Each core's (busy, total) counters: /proc/stat where it reads, psutil elsewhere."""
        if self._stat is not None:
            try:
                return self._stat.read()  # type: ignore[return-value]
            except (OSError, ValueError):  # not seen; psutil from here on rather than no sample
                self._stat.close()
                self._stat = None
        return [_busy_total(t) for t in psutil.cpu_times(percpu=True)]

    def sample(self) -> CpuSample:
        cur = self._core_times()
        if len(cur) != len(self._prev):  # a core went on- or offline: start over from here
            self._prev, self._last_pct = cur, tuple(0.0 for _ in cur)
        pct = core_percents(self._prev, cur, self._last_pct)
        self._prev, self._last_pct = cur, pct
        freqs, ram_used, ram_total, load1 = self._slow_readings(len(pct))
        return CpuSample(
            cpu_util_pct=sum(pct) / len(pct) if pct else 0.0,
            core_util_pct=pct,
            core_freq_mhz=freqs,
            cpu_power_w=self._rapl.power_w(),
            ram_used_bytes=ram_used,
            ram_total_bytes=ram_total,
            load1=load1,
        )

    def _slow_readings(self, n_cores: int) -> _Slow:
        now = self._clock()
        stale = self._slow_at is None or now - self._slow_at >= self._slow_interval_s
        slow = self._slow
        if stale or slow is None or len(slow.freqs) != n_cores:
            used, total = _memory()
            slow = self._slow = _Slow(_core_freqs(n_cores), used, total, _load1())
            self._slow_at = now
        return slow

    def describe(self, pids: Iterable[int]) -> dict[int, HostProcess]:
        """Name, user, command and CPU share of every pid this namespace can see; others absent.

        Process objects are kept between calls so ``cpu_pct`` is measured since the previous call;
        the first call for a pid gives ``cpu_pct=None``. Pids not asked for again are forgotten.
        """
        wanted = set(pids)
        known, self._procs = self._procs, {}
        out: dict[int, HostProcess] = {}
        for pid in wanted:
            proc = known.get(pid)
            try:
                if proc is not None and not proc.is_running():  # gone, or the pid was reused
                    proc = None
                first = proc is None
                if proc is None:
                    if not psutil.pid_exists(pid):  # not in this namespace (one kill(pid, 0))
                        continue
                    proc = psutil.Process(pid)
                with proc.oneshot():
                    name = _field(proc.name)
                    cpu = _field(proc.cpu_percent)
                    out[pid] = HostProcess(
                        name=name,
                        user=_field(proc.username),
                        command=" ".join(_field(proc.cmdline) or ()) or name,
                        cpu_pct=None if first else cpu,
                    )
            except psutil.NoSuchProcess:  # gone, or not in this pid namespace
                continue
            self._procs[pid] = proc
        return out


def _field(read: Callable[[], T]) -> T | None:
    """One process field; ``None`` where it is denied to us or the process is a zombie."""
    try:
        return read()
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _core_freqs(n: int) -> tuple[float | None, ...]:
    """Per-core current MHz. One entry for all cores (macOS, BSD) is every core's clock; a
    count that matches neither, or no reading at all (many VMs), gives None."""
    try:
        freqs = psutil.cpu_freq(percpu=True)
    except (NotImplementedError, OSError):
        return (None,) * n
    values = [f.current if f.current and f.current > 0 else None for f in freqs or ()]
    if len(values) == n:
        return tuple(values)
    if len(values) == 1:
        return (values[0],) * n
    return (None,) * n


def _memory() -> tuple[int, int]:
    """(used, total) bytes of RAM, used being total less MemAvailable, as psutil counts it.
    /proc/meminfo read directly (its first lines) where it has both: a third of the cost of
    ``psutil.virtual_memory``, which parses every line; psutil elsewhere."""
    try:
        with open(PROC_MEMINFO, "rb") as f:
            head = f.read(1024)
        fields = dict(line.split(b":", 1) for line in head.split(b"\n")[:8] if b":" in line)
        total = int(fields[b"MemTotal"].split()[0]) * 1024
        return total - int(fields[b"MemAvailable"].split()[0]) * 1024, total
    except (OSError, KeyError, ValueError, IndexError):
        mem = psutil.virtual_memory()
        return mem.total - mem.available, mem.total


def _load1() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def process_tree(pid: int) -> frozenset[int]:
    """``pid`` and its live descendants (zombies left out); empty when ``pid`` itself is gone.

    For the workload launcher, which keeps psutil here, in its one home."""
    try:
        root = psutil.Process(pid)
        if root.status() == psutil.STATUS_ZOMBIE:
            return frozenset()
        children = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return frozenset()
    alive = {pid}
    for child in children:
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return frozenset(alive)
