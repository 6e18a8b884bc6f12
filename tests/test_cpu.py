"""The host source: core utilization from our own deltas, RAPL power, process descriptions."""

import builtins
import os
import subprocess
import sys
import threading
import time
from collections import namedtuple

import psutil
import pytest

from gputop.sources import cpu as cpu_mod
from gputop.sources.cpu import CpuSource, core_percents

Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


def times(user=0.0, idle=0.0, iowait=0.0, guest=0.0, system=0.0):
    # guest time is already counted inside user on Linux
    return Times(user, 0.0, system, idle, iowait, 0.0, 0.0, 0.0, guest, 0.0)


class FakeClock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t


# --- utilization -------------------------------------------------------------------------------


@pytest.mark.unit
def test_busy_total_counts_iowait_as_idle_and_guest_inside_user():
    assert cpu_mod._busy_total(times(user=30, idle=60, iowait=10, guest=5)) == (30, 100)


@pytest.mark.unit
def test_core_percents_from_deltas_clamped_and_stalled_core_keeps_last():
    prev = [(10.0, 100.0), (0.0, 100.0), (5.0, 50.0)]
    cur = [(15.0, 110.0), (0.0, 100.0), (60.0, 60.0)]
    assert core_percents(prev, cur, last=(1.0, 42.0, 3.0)) == (50.0, 42.0, 100.0)


@pytest.fixture
def fake_times(monkeypatch):
    """psutil.cpu_times(percpu=True) as a list we control (two cores)."""
    state = {"now": [times(user=0, idle=0), times(user=0, idle=0)]}
    monkeypatch.setattr(cpu_mod.psutil, "cpu_times", lambda percpu=False: list(state["now"]))
    monkeypatch.setattr(cpu_mod, "PROC_STAT", "/nonexistent/stat")  # psutil's path, as off Linux
    return state


@pytest.mark.unit
def test_sample_reports_each_core_since_the_previous_sample(fake_times):
    src = CpuSource(powercap_root="/nonexistent")
    fake_times["now"] = [times(user=1, idle=1), times(user=0, idle=2)]
    s = src.sample()
    assert s.core_util_pct == (50.0, 0.0)
    assert s.cpu_util_pct == 25.0
    assert s.busy_cores == 0.5
    fake_times["now"] = [times(user=3, idle=1), times(user=2, idle=2)]
    assert src.sample().core_util_pct == (100.0, 100.0)


@pytest.mark.unit
def test_sample_is_independent_of_the_calling_thread_and_of_psutil_cpu_percent(fake_times):
    """psutil.cpu_percent keeps its previous snapshot per thread; ours is per source."""
    src = CpuSource(powercap_root="/nonexistent")
    fake_times["now"] = [times(user=1, idle=3), times(user=2, idle=2)]
    src.sample()
    fake_times["now"] = [times(user=3, idle=3), times(user=2, idle=4)]
    psutil.cpu_percent(percpu=True)  # another psutil caller must not disturb us
    out = []
    worker = threading.Thread(target=lambda: out.append(src.sample()))
    worker.start()
    worker.join()
    assert out[0].core_util_pct == (100.0, 0.0)


@pytest.mark.unit
def test_core_count_change_restarts_without_error(fake_times):
    src = CpuSource(powercap_root="/nonexistent")
    fake_times["now"] = [times(user=1, idle=1)] * 3
    s = src.sample()
    assert len(s.core_util_pct) == 3 and len(s.core_freq_mhz) == 3


@pytest.mark.unit
def test_real_sample_is_sane():
    src = CpuSource()
    s = src.sample()
    n = len(psutil.cpu_times(percpu=True))
    assert len(s.core_util_pct) == n == len(s.core_freq_mhz)
    assert all(0.0 <= u <= 100.0 for u in s.core_util_pct)
    assert s.cpu_util_pct == pytest.approx(sum(s.core_util_pct) / n)
    assert 0 < s.ram_used_bytes < s.ram_total_bytes == psutil.virtual_memory().total
    assert s.load1 == pytest.approx(os.getloadavg()[0], abs=5.0)


# --- /proc/stat --------------------------------------------------------------------------------


def _stat_text(cores):
    lines = ["cpu  9 9 9 9 9 9 9 9 0 0"]
    lines += [f"cpu{i} " + " ".join(str(v) for v in fields) for i, fields in enumerate(cores)]
    lines += ["intr 12345 " + " ".join("0" for _ in range(300)), "ctxt 999", "btime 1700000000", ""]
    return "\n".join(lines)


@pytest.mark.unit
def test_proc_stat_counts_as_psutil_does(tmp_path):
    """iowait is idle, steal is busy, guest (inside user already) is not added again."""
    cores = [
        (30, 0, 10, 50, 10, 0, 0, 0, 5, 0),  # user nice system idle iowait irq softirq steal guest guest_nice
        (1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
        (0, 0, 0, 100, 0, 0, 0, 0, 0, 0),
    ]
    path = tmp_path / "stat"
    path.write_text(_stat_text(cores))
    stat = cpu_mod._ProcStat.open(str(path))
    assert stat.read() == [cpu_mod._busy_total(Times(*c)) for c in cores] == [(40, 100), (27, 36), (0, 100)]


@pytest.mark.unit
def test_proc_stat_of_an_old_kernel_and_of_many_cores(tmp_path):
    old = tmp_path / "old"
    old.write_text("cpu  1 2 3 4\ncpu0 1 2 3 4\nintr 0\n")  # before iowait (2.4 kernels)
    assert cpu_mod._ProcStat.open(str(old)).read() == [(6, 10)]
    many = tmp_path / "many"  # far more than the first 4 KiB read
    many.write_text(_stat_text([(i, 0, 0, 1000, 0, 0, 0, 0, 0, 0) for i in range(512)]))
    got = cpu_mod._ProcStat.open(str(many)).read()
    assert len(got) == 512 and got[511] == (511, 1511)


@pytest.mark.unit
def test_proc_stat_does_not_need_the_whole_intr_line(tmp_path):
    """The line after the per-core ones can be hundreds of kB: the first read that reaches its
    start is enough; a read that ends inside a per-core line is not."""
    path = tmp_path / "stat"
    cores = [(i, 0, 0, 1000, 0, 0, 0, 0, 0, 0) for i in range(4)]
    path.write_text(_stat_text(cores).replace("intr 12345", "intr 12345" + " 7" * 200_000))
    stat = cpu_mod._ProcStat.open(str(path))
    assert len(stat.read()) == 4 and stat._size == 4096
    text = path.read_bytes()
    cut = text.index(b"cpu3 ") + 3
    assert cpu_mod._ProcStat._parse(text[:cut]) == ([(0, 1000), (1, 1001), (2, 1002)], False)


@pytest.mark.unit
def test_proc_stat_with_a_short_cpu_line_is_not_used(tmp_path):
    path = tmp_path / "stat"
    path.write_text("cpu  1 2 3 4\ncpu0 1 2\nintr 0\n")
    assert cpu_mod._ProcStat.open(str(path)) is None


@pytest.mark.unit
def test_proc_stat_missing_or_not_a_stat_file_falls_back_to_psutil(tmp_path):
    junk = tmp_path / "junk"
    junk.write_text("hello\nworld\n")
    assert cpu_mod._ProcStat.open(str(junk)) is None
    assert cpu_mod._ProcStat.open(str(tmp_path / "missing")) is None
    src = CpuSource(powercap_root="/nonexistent", proc_stat=str(junk))
    assert src._stat is None and len(src.sample().core_util_pct) == len(psutil.cpu_times(percpu=True))


@pytest.mark.unit
@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux only")
def test_proc_stat_agrees_with_psutil_here():
    ours = cpu_mod._ProcStat.open("/proc/stat").read()
    theirs = [cpu_mod._busy_total(t) for t in psutil.cpu_times(percpu=True)]
    assert len(ours) == len(theirs) > 0
    for (busy, total), (p_busy, p_total) in zip(ours, theirs):  # since boot, read microseconds apart
        assert busy / total == pytest.approx(p_busy / p_total, abs=0.01)


# --- frequencies -------------------------------------------------------------------------------

Freq = namedtuple("Freq", "current min max")


@pytest.mark.unit
@pytest.mark.parametrize(
    "reading, expected",
    [
        ([Freq(2000.0, 0, 0), Freq(3000.0, 0, 0)], (2000.0, 3000.0)),
        ([Freq(2500.0, 0, 0)], (2500.0, 2500.0)),  # one clock for the package (macOS, BSD)
        ([Freq(0.0, 0, 0), Freq(3000.0, 0, 0)], (None, 3000.0)),  # offline core reads 0
        ([], (None, None)),  # many VMs
        (None, (None, None)),
        ([Freq(1.0, 0, 0)] * 3, (None, None)),  # counts that match nothing: no guess
    ],
)
def test_core_freqs(monkeypatch, reading, expected):
    monkeypatch.setattr(cpu_mod.psutil, "cpu_freq", lambda percpu=False: reading)
    assert cpu_mod._core_freqs(2) == expected


@pytest.mark.unit
def test_core_freqs_not_implemented(monkeypatch):
    def boom(percpu=False):
        raise NotImplementedError("can't find current frequency file")

    monkeypatch.setattr(cpu_mod.psutil, "cpu_freq", boom)
    assert cpu_mod._core_freqs(2) == (None, None)


# --- RAPL package power ------------------------------------------------------------------------


def _domain(root, entry, name, energy_uj, max_range=1_000_000_000):
    d = root / entry
    d.mkdir()
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d


@pytest.fixture
def powercap(tmp_path):
    _domain(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    _domain(tmp_path, "intel-rapl:0:0", "core", 500_000)  # sub-domain: inside package-0 already
    _domain(tmp_path, "intel-rapl:1", "package-1", 2_000_000)
    _domain(tmp_path, "intel-rapl-mmio:0", "package-0", 9_000_000)  # the same package again
    _domain(tmp_path, "intel-rapl:2", "psys", 7_000_000)  # platform, not a package
    return tmp_path


def _set(root, entry, energy_uj):
    (root / entry / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.mark.unit
def test_rapl_sums_packages_over_monotonic_time(powercap):
    clock = FakeClock()
    src = CpuSource(powercap_root=str(powercap), clock=clock)
    assert src.has_power
    assert src.sample().cpu_power_w is None  # no delta yet
    clock.t += 2.0
    _set(powercap, "intel-rapl:0", 1_000_000 + 60_000_000)  # 60 J
    _set(powercap, "intel-rapl:1", 2_000_000 + 40_000_000)  # 40 J
    _set(powercap, "intel-rapl:0:0", 99_000_000)
    _set(powercap, "intel-rapl-mmio:0", 99_000_000)
    assert src.sample().cpu_power_w == pytest.approx(50.0)  # 100 J over 2 s


@pytest.mark.unit
def test_rapl_wraparound(tmp_path):
    _domain(tmp_path, "intel-rapl:0", "package-0", 990, max_range=1000)
    clock = FakeClock()
    src = CpuSource(powercap_root=str(tmp_path), clock=clock)
    src.sample()
    clock.t += 0.5
    _set(tmp_path, "intel-rapl:0", 10)  # 990 -> 1000 == 0 -> 10: 20 uJ
    assert src.sample().cpu_power_w == pytest.approx(20e-6 / 0.5)


@pytest.mark.unit
def test_rapl_missing_tree_is_none():
    src = CpuSource(powercap_root="/nonexistent/powercap")
    assert not src.has_power
    assert src.sample().cpu_power_w is None


@pytest.fixture
def deny_energy(monkeypatch):
    """energy_uj is root-only on kernels since 2020; make it so even when tests run as root."""
    state = {"deny": True}

    def guarded_open(path, *args, **kwargs):
        if state["deny"] and str(path).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(cpu_mod, "open", guarded_open, raising=False)
    return state


@pytest.mark.unit
def test_rapl_permission_denied_is_none(powercap, deny_energy):
    src = CpuSource(powercap_root=str(powercap), clock=FakeClock())
    assert not src.has_power
    assert src.sample().cpu_power_w is None
    assert src.sample().cpu_power_w is None


@pytest.mark.unit
def test_rapl_read_failing_mid_run_gives_none_then_recovers(powercap, deny_energy):
    deny_energy["deny"] = False
    clock = FakeClock()
    src = CpuSource(powercap_root=str(powercap), clock=clock)
    src.sample()
    deny_energy["deny"] = True
    clock.t += 1
    assert src.sample().cpu_power_w is None
    deny_energy["deny"] = False
    clock.t += 1
    assert src.sample().cpu_power_w is None  # re-anchored: the failed tick is not a delta
    clock.t += 1
    _set(powercap, "intel-rapl:0", 1_000_000 + 3_000_000)
    assert src.sample().cpu_power_w == pytest.approx(3.0)


# --- processes ---------------------------------------------------------------------------------


@pytest.mark.unit
def test_describe_own_process_and_cpu_pct_none_on_first_sight():
    src = CpuSource()
    me = os.getpid()
    first = src.describe([me])[me]
    assert first.name == psutil.Process(me).name()
    assert first.user == psutil.Process(me).username()
    assert first.command == " ".join(psutil.Process(me).cmdline())
    assert first.cpu_pct is None  # psutil's first answer is 0.0 by construction, not a measurement
    sum(range(200_000))
    second = src.describe([me])[me]
    assert isinstance(second.cpu_pct, float) and second.cpu_pct >= 0.0


@pytest.mark.e2e
def test_describe_leaves_out_pids_it_cannot_see():
    src = CpuSource()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: the pid is gone
    unused = max(psutil.pids()) + 100_000
    assert src.describe([child.pid, unused]) == {}


@pytest.mark.unit
def test_describe_forgets_pids_no_longer_asked_for():
    src = CpuSource()
    me = os.getpid()
    src.describe([me])
    src.describe([])
    assert src.describe([me])[me].cpu_pct is None  # first sight again


@pytest.mark.e2e
def test_describe_zombie_falls_back_to_name():
    src = CpuSource()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        _wait_zombie(child.pid)
        got = src.describe([child.pid])[child.pid]
        assert got.name is not None
        assert got.command == got.name  # a zombie has no command line
    finally:
        child.wait()


def _wait_zombie(pid):
    proc = psutil.Process(pid)
    for _ in range(1000):
        if proc.status() == psutil.STATUS_ZOMBIE:
            return
        time.sleep(0.01)
    pytest.fail("child never became a zombie")


@pytest.mark.unit
def test_describe_access_denied_per_field(monkeypatch):
    def denied(self):
        raise psutil.AccessDenied(self.pid)

    monkeypatch.setattr(psutil.Process, "username", denied)
    monkeypatch.setattr(psutil.Process, "cmdline", denied)
    me = os.getpid()
    got = CpuSource().describe([me])[me]
    assert got.user is None
    assert got.name == psutil.Process(me).name()
    assert got.command == got.name


@pytest.mark.unit
def test_memory_frequency_and_load_are_read_on_their_own_slower_cadence(monkeypatch):
    """At 100 Hz, /proc/meminfo and /proc/cpuinfo were most of the host's cost."""
    import gputop.sources.cpu as cpu_mod

    now = [100.0]
    reads = []
    real_memory = cpu_mod._memory
    monkeypatch.setattr(cpu_mod, "_memory", lambda: reads.append(now[0]) or real_memory())
    src = cpu_mod.CpuSource(clock=lambda: now[0], slow_interval_s=0.5)
    for _ in range(40):  # 40 ticks at 100 Hz: 0.4 s, inside one slow interval
        src.sample()
        now[0] += 0.01
    assert reads == [100.0]  # read once, not once per tick
    now[0] = 100.6
    sample = src.sample()
    assert reads == [100.0, 100.6] and sample.ram_total_bytes > 0


@pytest.mark.unit
def test_memory_from_proc_meminfo_is_what_psutil_reads(monkeypatch, tmp_path):
    """RAM read from /proc/meminfo directly: total and used as psutil gives them (used moves a
    little between two reads); psutil where the file is missing or lacks MemAvailable."""
    import gputop.sources.cpu as cpu_mod

    used, total = cpu_mod._memory()
    vm = psutil.virtual_memory()
    assert total == vm.total
    assert abs(used - (vm.total - vm.available)) < 0.05 * vm.total
    short = tmp_path / "meminfo"
    short.write_text("MemTotal:       1000 kB\nMemFree:         500 kB\n")
    monkeypatch.setattr(cpu_mod, "PROC_MEMINFO", str(short))
    assert cpu_mod._memory()[1] == vm.total  # fell back to psutil
    short.write_text("MemTotal:       1000 kB\nMemFree:         500 kB\nMemAvailable:    400 kB\n")
    assert cpu_mod._memory() == (600 * 1024, 1000 * 1024)
