"""Whether a job runs on the CPUs near its GPU: the rules (gputop.workload.placement), a real child
process measured live against the fake NVML's CPU affinity, and `record` + `report` of one."""

from __future__ import annotations

import dataclasses
import json
import os
import textwrap
import time

import pytest

import fakenvml
from fakenvml import H100_SXM, FakeProcess, GiB
from gputop.model import CpuSample, GpuInfo, GpuProcess, GpuSample, Sample
from gputop.sources.nvml import NvmlSource
from gputop.workload import Workload, placement
from gputop.workload.insight_text import placement_text
from helpers import gputop


def info(index: int, affinity: tuple[int, ...] | None) -> GpuInfo:
    return GpuInfo(
        index=index,
        name="fake",
        uuid=f"GPU-{index}",
        pci_bus_id=None,
        architecture=None,
        sm_count=None,
        mem_bus_width_bits=None,
        max_mem_clock_mhz=None,
        peak_dram_bw_bytes_per_s=None,
        driver_version=None,
        cuda_version=None,
        cpu_affinity=affinity,
    )


NEAR0, NEAR1 = tuple(range(0, 4)), tuple(range(4, 8))
BOARD = [info(0, NEAR0), info(1, NEAR1)]


# ---- the rules -------------------------------------------------------------------------------


@pytest.mark.unit
def test_most_time_far_from_the_gpu_is_a_warning_with_the_numbers():
    p = placement.place(BOARD, (1,), "processes", {0: 3.0, 1: 1.0, 5: 1.0})
    assert p is not None and p.gpus == (1,) and p.near_cpus == NEAR1
    assert p.cpu_s == pytest.approx(5.0) and p.far_cpu_s == pytest.approx(4.0)
    assert p.far_share == pytest.approx(0.8)
    assert p.warning is not None
    assert p.warning.startswith("80 % of the job's CPU time ran on CPUs 0,1, not near GPU1 (near: CPUs 4-7;")
    assert "GPUs from its GPU processes" in p.warning and p.warning.endswith("taskset -c 4-7")
    assert placement.as_dict(p) == {
        "gpus": [1],
        "gpus_from": "processes",
        "near_cpus": "4-7",
        "cpu_s": 5.0,
        "far_cpu_s": 4.0,
        "far_share": 0.8,
        "warning": p.warning,
    }


@pytest.mark.unit
def test_time_near_the_gpu_or_half_and_half_is_no_warning():
    assert placement.place(BOARD, (0,), "processes", {0: 3.0, 1: 1.0}).warning is None
    assert placement.place(BOARD, (0,), "processes", {0: 1.0, 5: 1.0}).warning is None  # not "most"
    assert placement.place(BOARD, (0, 1), "all", {0: 1.0, 5: 5.0}).warning is None  # near one of them


@pytest.mark.unit
def test_too_little_cpu_time_says_nothing_yet():
    p = placement.place(BOARD, (0,), "processes", {5: placement.MIN_CPU_S / 2})
    assert p is not None and p.far_share == 1.0 and p.warning is None
    assert placement.place(BOARD, (0,), "processes", {}) is None


@pytest.mark.unit
def test_no_affinity_from_nvml_is_none():
    assert placement.place([info(0, None)], (0,), "processes", {5: 10.0}) is None
    assert placement.as_dict(None) is None
    assert placement_text(None).startswith("n/a")


@pytest.mark.unit
def test_which_gpus_are_the_jobs():
    assert placement.choose(BOARD, {1}, "cuda:0", 0) == ((1,), "processes")
    assert placement.choose(BOARD, set(), "cuda:0", 0) == ((0,), "device")
    assert placement.choose(BOARD, set(), None, None) == ((0, 1), "all")
    assert placement.choose(BOARD, set(), "cpu", None) is None  # a job on the CPU has no GPU to be near
    gpus = [GpuSample(BOARD[0], processes=(GpuProcess(7, 0, "compute", None),)), GpuSample(BOARD[1], processes=None)]
    assert placement.job_gpus(gpus, {7, 8}) == {0} and placement.job_gpus(gpus, {9}) == set()


# ---- a real child, live ------------------------------------------------------------------------

SPIN = textwrap.dedent("""\
    import time
    end = time.monotonic() + 30
    while time.monotonic() < end:
        pass
""")
# spins until it has used this much CPU time (not for a wall time: on a loaded machine 2.5 s of
# spinning got 0.79 s of CPU), then idles a moment so the recorder's last look sees all of it
SPIN_FOR_CPU = textwrap.dedent(f"""\
    import time
    end = time.monotonic() + 60
    while time.process_time() < {placement.MIN_CPU_S + 0.5} and time.monotonic() < end:
        pass
    time.sleep(0.6)
""")
CPU = CpuSample(
    cpu_util_pct=50.0,
    core_util_pct=(50.0,) * (os.cpu_count() or 1),
    core_freq_mhz=(None,) * (os.cpu_count() or 1),
    cpu_power_w=None,
    ram_used_bytes=1,
    ram_total_bytes=2,
    load1=None,
)


def sample_of(src: NvmlSource) -> Sample:
    return Sample(ts_ns=time.time_ns(), cpu=CPU, gpus=src.sample(src.processes()))


def live(fake_nvml, tmp_path, devices, on_gpu: int | None, wait_s: float = 30.0):
    """A real child spinning on a core, polled with samples of the fake NVML (the child's pid
    put in GPU ``on_gpu``'s process list) until it has used MIN_CPU_S, or ``wait_s`` passed."""
    path = tmp_path / "spin.py"
    path.write_text(SPIN)
    with Workload(str(path)) as wl:
        wl.start()
        fake = fake_nvml(devices)
        if on_gpu is not None:
            fake.devices[on_gpu] = dataclasses.replace(fake.devices[on_gpu], processes=(FakeProcess(wl.pid, GiB),))
        src = NvmlSource.open(clock=lambda: fake.now_ns / 1e9)
        try:
            deadline = time.monotonic() + wait_s
            state = wl.poll(sample_of(src))
            while time.monotonic() < deadline and (state.placement is None or state.placement.cpu_s < placement.MIN_CPU_S):
                time.sleep(0.2)
                state = wl.poll(sample_of(src))
        finally:
            src.close()
        assert state.job is not None and state.job.processes  # the child was watched
        return state.placement


@pytest.mark.e2e
def test_a_real_child_on_a_gpu_of_the_other_socket_is_warned_of(fake_nvml, tmp_path):
    """This machine's cores are all on "socket 0" of the fake board: GPU 4 hangs off socket 1."""
    far = live(fake_nvml, tmp_path, [H100_SXM] * 8, on_gpu=4)
    assert far is not None and far.gpus == (4,) and far.gpus_from == "processes"
    assert far.far_share == 1.0 and far.warning is not None and "not near GPU4" in far.warning


@pytest.mark.e2e
def test_a_real_child_near_its_gpu_is_not(fake_nvml, tmp_path):
    near = live(fake_nvml, tmp_path, [H100_SXM] * 8, on_gpu=2)
    assert near is not None and near.gpus == (2,) and near.gpus_from == "processes"
    assert near.far_cpu_s == 0.0 and near.warning is None and near.cpu_s >= placement.MIN_CPU_S


@pytest.mark.e2e
def test_a_real_child_with_no_affinity_from_nvml_gets_nothing_said(fake_nvml, tmp_path):
    assert live(fake_nvml, tmp_path, [dataclasses.replace(H100_SXM, cpu_affinity=None)], None, wait_s=2.5) is None


# ---- recorded, and reported -------------------------------------------------------------------


def record_and_report(tmp_path, fake: str) -> dict:
    script = tmp_path / "spin.py"
    script.write_text(SPIN_FOR_CPU)
    trace = tmp_path / "t.json"
    done = gputop("record", "--out", str(trace), "--force", "--interval", "0.2", "--quiet", "--run", str(script), fake=fake)
    assert done.returncode == 0, done.stderr
    report = gputop("report", "--json", str(trace))
    assert report.returncode == 0, report.stderr
    text = gputop("report", str(trace)).stdout
    workload = json.loads(report.stdout)["workload"]
    return {"placement": workload["placement"], "text": text}


@pytest.mark.e2e
def test_report_says_the_job_ran_far_from_the_gpu(tmp_path):
    out = record_and_report(tmp_path, "H100_SXM+cpu_affinity=64-127")
    p = out["placement"]
    assert p["gpus"] == [0] and p["gpus_from"] == "all" and p["near_cpus"] == "64-127"
    assert p["far_share"] == 1.0 and p["cpu_s"] >= placement.MIN_CPU_S
    assert p["warning"].startswith("100 % of the job's CPU time ran on CPUs ")
    assert "  placement   ⚠ 100 % of the job's CPU time" in out["text"]


@pytest.mark.e2e
def test_report_near_and_not_supported(tmp_path):
    near = record_and_report(tmp_path, "H100_SXM")["placement"]
    assert near["far_share"] == 0.0 and near["warning"] is None and near["near_cpus"] == "0-55,112-167"
    out = record_and_report(tmp_path, "H100_SXM+cpu_affinity=none")
    assert out["placement"] is None and "  placement   n/a" in out["text"]


@pytest.mark.unit
def test_the_fake_board_puts_this_machines_cores_on_socket_0():
    """What the live test leans on: every core here is near GPU 0-3 and far from 4-7."""
    fake = fakenvml.FakeNvml([H100_SXM] * 8)
    here = set(range(os.cpu_count() or 1))
    assert here <= fakenvml.cpu_affinity(fake, 0) and not here & fakenvml.cpu_affinity(fake, 4)


@pytest.mark.unit
def test_report_takes_the_gpus_the_recorder_saw_the_job_on():
    from gputop.workload import insight

    sample = Sample(ts_ns=1, cpu=CPU, gpus=tuple(GpuSample(i) for i in BOARD))
    jobs = [
        (10, {"core_cpu_s": [[0, 1.5], [1, 0.5]], "placement_gpus": [1], "placement_from": "processes"}),
        (20, {"core_cpu_s": [[0, 1.0], ["x", 2], [5, None]]}),
    ]  # what is not a (core, s) pair is left out
    got = insight.recorded([], jobs, [sample], None)["placement"]
    assert got["gpus"] == [1] and got["gpus_from"] == "processes" and got["cpu_s"] == 3.0
    assert got["far_share"] == 1.0 and "not near GPU1" in got["warning"]
    # a job that announced cuda:0 and was never seen in a process list is placed against GPU0
    got = insight.recorded([], jobs[1:], [sample], None, device="cuda:0")["placement"]
    assert got["gpus"] == [0] and got["gpus_from"] == "device" and got["warning"] is None
    # on the CPU, and on no GPU's process list: no GPU to be near
    assert insight.recorded([], jobs[1:], [sample], None, device="cpu")["placement"] is None
