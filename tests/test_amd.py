"""AmdSource over the real amdsmi 7.0.2 wrapper, which runs over tests/fakeamdsmi.py (libamd_smi as
symbols): each metric with its n/a rule, each scenario (MI300X, eight on two NUMA nodes, MI250X's
two dies, a Radeon, the driver not loaded, no ROCm at all), both vendors side by side."""

from __future__ import annotations

import math

import pytest

import fakeamdsmi
from gputop import format as fmt
from gputop.model import GpuSample
from gputop.sources.amd import AmdSource, AmdUnavailable
from gputop.sources.amd.info import architecture, node_cpus, pcie_gen

pytestmark = pytest.mark.unit

GiB = 1 << 30


def opened(fake: fakeamdsmi.FakeAmdSmi, first_index: int = 0) -> AmdSource:
    return AmdSource.open(first_index=first_index, clock=fake.now)


def two_reads(fake: fakeamdsmi.FakeAmdSmi, source: AmdSource, dt: float = 1.0) -> tuple[GpuSample, ...]:
    source.sample()
    fake.advance(dt)
    return source.sample()


def test_mi300x_each_metric_from_its_own_call(fake_amdsmi):
    fake = fake_amdsmi("MI300X")
    source = opened(fake)
    try:
        info = source.devices[0]
        assert (info.name, info.vendor, info.sm_count, info.architecture) == ("AMD Instinct MI300X", "amd", 304, "CDNA 3")
        assert (info.pcie_link_gen, info.pcie_link_width, info.runtime_index) == (5, 16, 0)
        assert info.peak_dram_bw_bytes_per_s is None and info.cuda_version is None
        assert info.uuid and info.uuid.startswith("GPU-")  # HIP's UUID: what a ROCm PyTorch reports
        fake.advance(0.7)
        (gpu,) = two_reads(fake, source)
        i = 0
        assert gpu.gpu_util_pct == round(fake._wave(i, *fakeamdsmi.MI300X.gfx_util))
        assert gpu.mem_busy_pct == round(fake._wave(i, *fakeamdsmi.MI300X.umc_util))
        assert gpu.mem_total_bytes == 192 * GiB  # bytes (amdsmi_get_gpu_memory_total), not MB
        assert gpu.mem_used_bytes == int(192 * GiB * fake._wave(i, 0.4, 0.1))
        assert gpu.power_w == round(fake.power_w(i))  # socket_power: MI300X's average is N/A
        assert gpu.power_limit_w == 750.0
        assert (gpu.sm_clock_mhz, gpu.mem_clock_mhz) == (2100, 1300)
        assert gpu.temp_c is None  # no edge sensor on MI300X: n/a, not the hotspot's figure
        assert (gpu.temp_hotspot_c, gpu.temp_mem_c) == (68.0, 58.0)
        assert gpu.fan_pct is None
        assert gpu.clock_event_reasons == ()  # a violation status with nothing active
        # GPM and NVIDIA-only readings stay n/a, never 0
        assert gpu.sm_active_pct is None and gpu.dram_bw_util_pct is None and gpu.pstate is None
        assert gpu.nvlink_tx_bytes_per_s is None and gpu.pcie_tx_bytes_per_s is None
        # XGMI: 7 links, each at 2 GB/s x 60 % read (KB accumulators), half that written
        assert gpu.xgmi_read_bytes_per_s == pytest.approx(7 * 2e6 * 0.6 * 1024, rel=1e-3)
        assert gpu.xgmi_write_bytes_per_s == pytest.approx(7 * 1e6 * 0.6 * 1024, rel=1e-3)
    finally:
        source.close()


def test_energy_counter_against_the_integral_of_power(fake_amdsmi):
    fake = fake_amdsmi("MI300X")
    source = opened(fake)
    try:
        first = source.sample()[0].energy_j
        integral, dt = 0.0, 0.01
        for _ in range(300):  # 3 s, power integrated by the midpoint rule
            fake.advance(dt / 2)
            integral += fake.power_w(0) * dt
            fake.advance(dt / 2)
        last = source.sample()[0].energy_j
        assert first is not None and last is not None
        # the counter's unit (15.259 uJ) is far below a watt-second
        assert last - first == pytest.approx(integral, rel=1e-3)
    finally:
        source.close()


def test_processes_vram_and_engine_time_as_a_share(fake_amdsmi):
    fake = fake_amdsmi("MI300X")
    source = opened(fake)
    try:
        first = source.processes()[0]
        assert first is not None and len(first) == 1
        assert first[0].gpu_mem_bytes == 40 * GiB and first[0].sm_util_pct is None  # one read: no delta yet
        fake.advance(2.0)
        (proc,) = source.processes()[0] or ()
        assert proc.sm_util_pct == pytest.approx(60.0)  # 1.2 s of GFX time in 2 s
    finally:
        source.close()


def test_eight_mi300x_on_two_numa_nodes(fake_amdsmi, tmp_path):
    fake = fake_amdsmi("MI300X*8")
    source = opened(fake, first_index=2)  # after two NVIDIA GPUs
    try:
        assert [d.index for d in source.devices] == list(range(2, 10))
        assert [d.runtime_index for d in source.devices] == list(range(8))
        assert len({d.uuid for d in source.devices}) == 8
        assert [fake.devices[i].numa_node for i in range(8)] == [0, 0, 0, 0, 1, 1, 1, 1]
    finally:
        source.close()
    (tmp_path / "node1").mkdir()
    (tmp_path / "node1" / "cpulist").write_text("48-95,144-191\n")
    assert node_cpus(1, str(tmp_path)) == tuple(range(48, 96)) + tuple(range(144, 192))
    assert node_cpus(3, str(tmp_path)) is None and node_cpus(None) is None


def test_mi250x_power_on_the_even_die_only(fake_amdsmi):
    fake = fake_amdsmi("MI250X")
    source = opened(fake)
    try:
        even, odd = two_reads(fake, source)
        assert (even.info.architecture, even.info.sm_count) == ("CDNA 2", 110)
        assert even.power_w == round(fake.power_w(0))  # the package's figure
        assert odd.power_w is None  # reads 0 W: a die that does not report, n/a
        assert odd.energy_j is not None and even.temp_c == 42.0
        assert even.info.pcie_link_gen == 4  # 16000 MT/s
    finally:
        source.close()


def test_radeon_fan_and_no_violation_status(fake_amdsmi):
    fake = fake_amdsmi("RADEON")
    source = opened(fake)
    try:
        (gpu,) = two_reads(fake, source)
        assert gpu.info.architecture == "RDNA 3"
        assert gpu.fan_pct == pytest.approx(100 * 92 / 255)
        assert gpu.clock_event_reasons is None  # no violation status on the card: n/a, not "none"
        assert gpu.temp_c == 45.0
        assert gpu.power_w == round(fake.power_w(0))  # average_socket_power
        assert gpu.xgmi_read_bytes_per_s is None  # no XGMI links
        assert source.processes() == {0: ()}
    finally:
        source.close()


def test_violation_in_words(fake_amdsmi):
    fake = fake_amdsmi("MI300X")
    fake.devices[0] = fakeamdsmi.dataclasses.replace(fake.devices[0], throttled_power=True)
    source = opened(fake)
    try:
        (gpu,) = source.sample()
        assert gpu.clock_event_reasons == ("amd_power",)
        assert fmt.reasons(gpu.clock_event_reasons) == "power limit (PPT)"
    finally:
        source.close()


class _AllOnes(fakeamdsmi.FakeAmdSmi):
    """Activities of all ones (the 32-bit field's "not available": the wrapper checks 0xFFFF only)
    and a power_info of all ones everywhere."""

    def amdsmi_get_gpu_activity(self, handle, out):
        usage = fakeamdsmi._obj(out)
        usage.gfx_activity = usage.umc_activity = usage.mm_activity = 0xFFFFFFFF
        return fakeamdsmi.SUCCESS

    def amdsmi_get_power_info(self, handle, out):
        info = fakeamdsmi._obj(out)
        info.socket_power = 0xFFFFFFFFFFFFFFFF
        info.current_socket_power = info.average_socket_power = info.power_limit = 0xFFFFFFFF
        return fakeamdsmi.SUCCESS


def test_all_ones_is_not_available():
    fake = _AllOnes([fakeamdsmi.MI300X])
    fakeamdsmi.install(fake)
    try:
        source = opened(fake)
        (gpu,) = source.sample()
        assert gpu.gpu_util_pct is None and gpu.mem_busy_pct is None
        assert gpu.power_w is None
        assert gpu.power_limit_w == 750.0  # from power_cap_info (microwatts) instead
        source.close()
    finally:
        fakeamdsmi.uninstall()


def test_driver_not_loaded_is_one_line(fake_amdsmi):
    fake_amdsmi("none:driver_not_loaded")
    with pytest.raises(AmdUnavailable) as caught:
        AmdSource.open()
    assert caught.value.reason == "amdgpu driver not loaded" and caught.value.library_found


def test_no_devices(fake_amdsmi):
    fake_amdsmi("none")
    with pytest.raises(AmdUnavailable, match="no AMD GPU found"):
        AmdSource.open()


def test_without_rocm_import_prints_nothing(capfd):
    fakeamdsmi.uninstall()  # amdsmi not imported: its import looks for libamd_smi.so and fails
    with pytest.raises(AmdUnavailable) as caught:
        AmdSource.open()
    assert "libamd_smi.so not found" in caught.value.reason and not caught.value.library_found
    assert capfd.readouterr().out == ""  # the wrapper's own print never reaches stdout


def test_closed_source_refuses(fake_amdsmi):
    fake = fake_amdsmi("MI300X")
    source = opened(fake)
    source.close()
    source.close()
    with pytest.raises(RuntimeError):
        source.sample()
    assert "amdsmi_shut_down" in fake.calls


def test_both_vendors_side_by_side(fake_nvml, fake_amdsmi):
    from gputop.sources.vendors import open_gpus

    fake_nvml("H100_SXM*2")
    fake_amdsmi("MI300X")
    gpu, reason = open_gpus()
    assert gpu is not None and reason is None
    try:
        assert [(d.index, d.vendor) for d in gpu.devices] == [(0, "nvidia"), (1, "nvidia"), (2, "amd")]
        samples = gpu.sample(gpu.processes())
        assert [s.info.index for s in samples] == [0, 1, 2]
        assert samples[2].processes is not None and samples[2].processes[0].gpu_index == 2
    finally:
        gpu.close()


def test_no_gpu_reason_names_amd_only_where_rocm_is(fake_nvml, fake_amdsmi):
    from gputop.sources.vendors import open_gpus

    fake_nvml("none:driver_not_loaded")
    fakeamdsmi.uninstall()
    assert open_gpus() == (None, "NVIDIA driver not loaded")  # no ROCm: NVIDIA's words as ever
    fake_amdsmi("none:driver_not_loaded")
    assert open_gpus() == (None, "NVIDIA driver not loaded; AMD: amdgpu driver not loaded")


def test_the_fake_offers_only_symbols_the_wrapper_binds(fake_amdsmi):
    fake_amdsmi("MI300X")
    import amdsmi.amdsmi_wrapper as wrapper

    offered = [name for name in dir(fakeamdsmi.FakeAmdSmi) if name.startswith("amdsmi_")]
    assert len(offered) > 20
    missing = [name for name in offered if not hasattr(wrapper, name) or getattr(getattr(wrapper, name), "argtypes", None) is None]
    assert missing == []


def test_a_struct_of_the_wrong_type_is_refused(fake_amdsmi):
    fake_amdsmi("MI300X")
    import ctypes

    import amdsmi.amdsmi_wrapper as wrapper

    with pytest.raises(TypeError, match="amdsmi_engine_usage_t"):
        wrapper.amdsmi_get_gpu_activity(ctypes.c_void_p(fakeamdsmi.HANDLE_BASE), ctypes.byref(wrapper.amdsmi_power_info_t()))


def test_static_conversions():
    assert [pcie_gen(v) for v in (2500, 8000, 16000, 32000, 64000, 0xFFFFFFFF, "N/A")] == [1, 3, 4, 5, 6, None, None]
    assert [architecture(v) for v in ("gfx942", "gfx90a", "gfx1100", "gfx1036", "gfx0", "N/A")] == [
        "CDNA 3",
        "CDNA 2",
        "RDNA 3",
        "gfx1036",
        None,
        None,
    ]
    assert not math.isnan(fakeamdsmi.ENERGY_RESOLUTION_UJ)


def test_verdict_memory_bound_from_umc_activity(fake_amdsmi):
    """A ROCm job on cuda:0 whose GPU's engine and memory controllers are both busy is memory-bound:
    UMC activity stands where GPM's DRAM bandwidth would (documented in the README)."""
    from gputop.model import CpuSample, Sample, WorkloadStep
    from gputop.workload import insight, verdict

    fake = fake_amdsmi("MI300X")
    fake.devices[0] = fakeamdsmi.dataclasses.replace(fake.devices[0], gfx_util=(97.0, 0.0), umc_util=(92.0, 0.0))
    source = opened(fake)
    try:
        gpus = source.sample()
    finally:
        source.close()
    cpu = CpuSample(10.0, (10.0,), (None,), None, 1, 2, None)
    steps = [WorkloadStep(k, 32, None, 0.1, k * 10**8) for k in range(1, verdict.WARMUP_STEPS + verdict.MIN_STEPS + 2)]
    v = insight.live_verdict(steps, "cuda:0", None, Sample(ts_ns=10**9, cpu=cpu, gpus=gpus), {})
    assert v.kind == "gpu_memory_bound", v
    assert "utilization 97 % active" in v.evidence and "92 %" in v.evidence


def test_rocm_s_own_amdsmi_package_is_found(tmp_path):
    from gputop.sources.amd.library import rocm_package_dir

    assert rocm_package_dir({"ROCM_PATH": str(tmp_path)}) is None  # no package there
    package = tmp_path / "share" / "amd_smi" / "amdsmi"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    assert rocm_package_dir({"ROCM_PATH": str(tmp_path)}) == str(tmp_path / "share" / "amd_smi")
    assert rocm_package_dir({"ROCM_HOME": str(tmp_path)}) == str(tmp_path / "share" / "amd_smi")


def test_slow_readings_on_their_own_tier(fake_amdsmi):
    """Temperatures, fan and violation status every SLOW_INTERVAL_S at most; activity every read."""
    from gputop.sources.amd.source import SLOW_INTERVAL_S

    fake = fake_amdsmi("MI300X")
    source = opened(fake)
    try:
        fake.calls.clear()
        for _ in range(10):  # 1 s of reads 0.1 s apart
            source.sample()
            fake.advance(0.1)
    finally:
        source.close()
    assert fake.calls.count("amdsmi_get_gpu_activity") == 10
    assert fake.calls.count("amdsmi_get_violation_status") == round(1.0 / SLOW_INTERVAL_S)
    assert fake.calls.count("amdsmi_get_temp_metric") == 3 * round(1.0 / SLOW_INTERVAL_S)


def test_driver_time_and_read_intervals_through_the_seam(fake_nvml, fake_amdsmi):
    """gputop's own time in amdsmi calls is counted at the choke point, summed with NVML's across
    the seam; the slow tier is what read_intervals names."""
    from gputop.sources.gpu import GpuSources
    from gputop.sources.nvml import NvmlSource

    fake_nvml("H100_SXM")
    amd = fake_amdsmi("MI300X")
    nvml, source = NvmlSource.open(), opened(amd, first_index=1)
    both = GpuSources([nvml, source])
    try:
        ns0, calls0 = source.driver_time()
        source.sample()
        ns1, calls1 = source.driver_time()
        assert calls1 - calls0 >= 10 and ns1 > ns0  # activity, memory, power, energy, clocks, temps...
        assert source.read_intervals()["temp_hotspot_c"] == 0.5 and "power_w" not in source.read_intervals()
        total_ns, total_calls = both.driver_time()
        assert total_calls == calls1 + nvml.driver_time()[1] and total_ns >= ns1
        assert both.read_intervals()["clock_event_reasons"] == 0.5
    finally:
        both.close()
