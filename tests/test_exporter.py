"""The Prometheus collector over stub Samples: names, labels, units, None as no series, promtool."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import tui_fixtures
from gputop import metrics
from gputop.commands import exporter
from gputop.commands.exporter import NAMES, Exporter, JobFigures, prom_name
from gputop.model import CpuSample, GpuInfo, GpuSample, RankRow, RankStraggler, Sample
from gputop.workload.ranks import RankTotal
from tui_fixtures import rank_row as row

TS_NS = 1_700_000_000_123_456_789
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install -y prometheus)")


def info(index: int = 0, **kw) -> GpuInfo:
    base = dict(
        index=index,
        name="NVIDIA H100 80GB HBM3",
        uuid=f"GPU-{index:08d}-aaaa",
        pci_bus_id=f"00000000:{0x18 + index:02X}:00.0",
        architecture="Hopper",
        sm_count=132,
        mem_bus_width_bits=5120,
        max_mem_clock_mhz=2619,
        peak_dram_bw_bytes_per_s=3.35e12,
        driver_version="550.54.15",
        cuda_version="12.4",
        gpm_supported=True,
    )
    base.update(kw)
    return GpuInfo(**base)


def full_gpu(index: int = 0, **kw) -> GpuSample:
    """Every metric present (energy a counter, clock reasons two words)."""
    base = dict(
        gpu_util_pct=85.0,
        mem_busy_pct=45.0,
        sm_active_pct=75.0,
        sm_occupancy_pct=40.0,
        tensor_active_pct=35.0,
        dram_bw_util_pct=55.0,
        fp16_active_pct=12.0,
        fp32_active_pct=20.0,
        fp64_active_pct=6.0,
        dram_bw_bytes_per_s=1.8425e12,
        mem_used_bytes=60 * 2**30,
        mem_total_bytes=80 * 2**30,
        power_w=520.0,
        power_limit_w=700.0,
        energy_j=123456.789,
        sm_clock_mhz=1755,
        mem_clock_mhz=2619,
        temp_c=48.0,
        fan_pct=30.0,
        pstate=0,
        clock_event_reasons=("sw_power_cap", "sync_boost"),
        pcie_tx_bytes_per_s=1.5e9,
        pcie_rx_bytes_per_s=4e9,
        nvlink_tx_bytes_per_s=1.5e11,
        nvlink_rx_bytes_per_s=1.4e11,
    )
    base.update(kw)
    return GpuSample(info(index), **base)


CPU = CpuSample(
    cpu_util_pct=50.0,
    core_util_pct=(100.0, 0.0, 50.0),
    core_freq_mhz=(3000.0, None, 2500.0),
    cpu_power_w=None,
    ram_used_bytes=10**9,
    ram_total_bytes=2 * 10**9,
    load1=0.5,
)


def scrape(*samples: Sample, hostname: str = "node1") -> tuple[str, dict]:
    """The exposition text and {metric family name: family} after ``update`` with each sample."""
    exp = Exporter(hostname=hostname, interval_s=1.0)
    for s in samples:
        exp.update(s)
    registry = CollectorRegistry()
    registry.register(exp)
    text = generate_latest(registry).decode()
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def series(families: dict, name: str) -> dict[tuple, float]:
    """{sorted label items: value} of one sample name (``name`` as exposed, with any _total)."""
    out = {}
    for fam in families.values():
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def one(families: dict, metric_name: str, /, **labels: str) -> float:
    found = [v for k, v in series(families, metric_name).items() if set(labels.items()) <= set(k)]
    assert len(found) == 1, f"{metric_name} {labels}: {found}"
    return found[0]


@pytest.mark.unit
def test_every_exported_catalogue_metric_has_one_conventional_name():
    assert set(NAMES) == set(metrics.GPU_METRICS) | set(metrics.CPU_METRICS)
    assert len(set(NAMES.values())) == len(NAMES)
    for name, stem in NAMES.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", stem)
        m = metrics.metric(name)
        if m.unit == "%":
            assert stem.endswith("_ratio"), name
        if m.kind != "counter":  # promtool: _total, _count, _sum, _bucket belong to other types
            assert not re.search(r"_(total|count|sum|bucket)$", stem), name
    assert prom_name("energy_j") == "gputop_gpu_energy_joules"


@pytest.mark.unit
def test_names_labels_and_units_of_a_full_sample():
    text, fam = scrape(Sample(TS_NS, CPU, (full_gpu(0), full_gpu(1, power_w=300.0))))
    gpu0 = dict(hostname="node1", gpu="0", uuid="GPU-00000000-aaaa", name="NVIDIA H100 80GB HBM3")
    assert one(fam, "gputop_gpu_sm_active_ratio", **gpu0) == pytest.approx(0.75)
    assert one(fam, "gputop_gpu_utilization_ratio", **gpu0) == pytest.approx(0.85)
    assert one(fam, "gputop_gpu_dram_bandwidth_utilization_ratio", **gpu0) == pytest.approx(0.55)
    assert one(fam, "gputop_gpu_dram_bandwidth_bytes_per_second", **gpu0) == pytest.approx(1.8425e12)
    assert one(fam, "gputop_gpu_power_watts", gpu="0") == 520.0
    assert one(fam, "gputop_gpu_power_watts", gpu="1") == 300.0
    assert one(fam, "gputop_gpu_memory_used_bytes", gpu="0") == 60 * 2**30
    assert one(fam, "gputop_gpu_memory_capacity_bytes", gpu="0") == 80 * 2**30
    assert one(fam, "gputop_gpu_sm_clock_hertz", gpu="0") == 1755e6
    assert one(fam, "gputop_gpu_temperature_celsius", gpu="0") == 48.0
    assert one(fam, "gputop_gpu_fan_speed_ratio", gpu="0") == pytest.approx(0.30)
    assert one(fam, "gputop_gpu_nvlink_receive_bytes_per_second", gpu="1") == 1.4e11
    # a counter is a counter, exposed with _total
    assert fam["gputop_gpu_energy_joules"].type == "counter"
    assert one(fam, "gputop_gpu_energy_joules_total", gpu="0") == pytest.approx(123456.789)
    assert "# TYPE gputop_gpu_energy_joules_total counter" in text
    # static facts
    assert one(fam, "gputop_gpu_multiprocessors", gpu="0") == 132
    gi = [k for k in series(fam, "gputop_gpu_info") if ("gpu", "0") in k][0]
    assert dict(gi)["architecture"] == "Hopper" and dict(gi)["driver_version"] == "550.54.15"
    assert one(fam, "gputop_gpu_lost", gpu="0") == 0.0
    assert one(fam, "gputop_gpus") == 2
    # clock event reasons: one series per active reason, and their count
    reasons = {dict(k)["reason"] for k in series(fam, "gputop_gpu_clock_event_reason") if ("gpu", "0") in k}
    assert reasons == {"sw_power_cap", "sync_boost"}
    assert one(fam, "gputop_gpu_clock_event_reasons_active", gpu="0") == 2
    # CPU: ratios, per-core label, hertz, hostname on every series
    assert one(fam, "gputop_cpu_utilization_ratio") == 0.5
    assert one(fam, "gputop_cpu_core_utilization_ratio", core="0") == 1.0
    assert one(fam, "gputop_cpu_core_utilization_ratio", core="2") == 0.5
    assert one(fam, "gputop_cpu_core_frequency_hertz", core="2") == 2.5e9
    assert one(fam, "gputop_host_memory_capacity_bytes") == 2e9
    assert one(fam, "gputop_host_load1") == 0.5
    assert one(fam, "gputop_last_sample_timestamp_seconds") == pytest.approx(TS_NS / 1e9)
    for f in fam.values():
        for s in f.samples:
            assert s.labels.get("hostname") == "node1", s


@pytest.mark.unit
def test_none_is_no_series_never_zero():
    gpu = GpuSample(info(0), gpu_util_pct=10.0, power_w=None, fan_pct=None, energy_j=None, clock_event_reasons=None)
    _, fam = scrape(Sample(TS_NS, CPU, (gpu, full_gpu(1))))
    assert series(fam, "gputop_gpu_power_watts").keys() == {k for k in series(fam, "gputop_gpu_power_watts") if ("gpu", "1") in k}
    assert len(series(fam, "gputop_gpu_power_watts")) == 1
    assert [dict(k)["gpu"] for k in series(fam, "gputop_gpu_energy_joules_total")] == ["1"]
    assert [dict(k)["gpu"] for k in series(fam, "gputop_gpu_clock_event_reasons_active")] == ["1"]
    # CPU: RAPL unreadable -> no package power; a core without a frequency -> no series for it
    assert series(fam, "gputop_cpu_package_power_watts") == {}
    assert "gputop_cpu_package_power_watts" not in fam
    assert sorted(dict(k)["core"] for k in series(fam, "gputop_cpu_core_frequency_hertz")) == ["0", "2"]
    # all GPUs without a value: no family at all (no HELP/TYPE for an empty family)
    _, fam = scrape(Sample(TS_NS, CPU, (GpuSample(info(0), gpu_util_pct=10.0),)))
    assert "gputop_gpu_sm_active_ratio" not in fam and "gputop_gpu_fan_speed_ratio" not in fam


@pytest.mark.unit
def test_no_active_clock_reason_is_a_zero_count_and_no_reason_series():
    _, fam = scrape(Sample(TS_NS, CPU, (full_gpu(0, clock_event_reasons=()),)))
    assert one(fam, "gputop_gpu_clock_event_reasons_active", gpu="0") == 0
    assert series(fam, "gputop_gpu_clock_event_reason") == {}


@pytest.mark.unit
def test_lost_gpu_is_flagged_and_has_no_readings():
    lost = GpuSample(info(1), lost=True)
    _, fam = scrape(Sample(TS_NS, CPU, (full_gpu(0), lost)))
    assert one(fam, "gputop_gpu_lost", gpu="1") == 1.0
    assert one(fam, "gputop_gpu_lost", gpu="0") == 0.0
    assert [dict(k)["gpu"] for k in series(fam, "gputop_gpu_power_watts")] == ["0"]


@pytest.mark.unit
def test_no_gpu_reason_is_an_info_metric():
    _, fam = scrape(Sample(TS_NS, CPU, (), gpu_unavailable="NVIDIA driver not loaded"))
    assert one(fam, "gputop_gpus") == 0
    (labels,) = series(fam, "gputop_gpu_unavailable_info")
    assert dict(labels) == {"hostname": "node1", "reason": "NVIDIA driver not loaded"}
    assert not [n for n in fam if n.startswith("gputop_gpu_") and n != "gputop_gpu_unavailable_info"]


@pytest.mark.unit
def test_before_the_first_sample_only_the_exporter_itself_is_described():
    _, fam = scrape()
    assert one(fam, "gputop_samples_total") == 0
    assert "gputop_cpu_utilization_ratio" not in fam and "gputop_last_sample_timestamp_seconds" not in fam


@pytest.mark.unit
def test_update_swaps_the_latest_sample_and_counts_it():
    exp = Exporter(hostname="h")
    exp.update(Sample(TS_NS, CPU, (full_gpu(0, power_w=100.0),)))
    exp.update(Sample(TS_NS + 1, CPU, (full_gpu(0, power_w=200.0),)))
    registry = CollectorRegistry()
    registry.register(exp)
    fam = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert exp.samples == 2 and one(fam, "gputop_samples_total") == 2
    assert one(fam, "gputop_gpu_power_watts") == 200.0


@pytest.mark.unit
def test_default_hostname_is_this_machine():
    import socket

    assert Exporter().hostname == socket.gethostname()


@pytest.mark.unit
def test_label_values_are_escaped():
    odd = GpuSample(info(0, name='GPU "quoted" \\ name\nx', uuid=None), power_w=1.0)
    text, fam = scrape(Sample(TS_NS, CPU, (odd,)), hostname="h")
    assert one(fam, "gputop_gpu_power_watts", name='GPU "quoted" \\ name\nx', uuid="") == 1.0


@pytest.mark.e2e
@needs_promtool
def test_promtool_accepts_the_exposition():
    samples = [
        Sample(TS_NS, CPU, (full_gpu(0), full_gpu(1, clock_event_reasons=()), GpuSample(info(2), lost=True))),
        Sample(TS_NS, CPU, (), gpu_unavailable="no NVIDIA GPU found"),
    ]
    for s in samples:
        text, _ = scrape(s)
        out = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.e2e
def test_exporter_module_imports_neither_textual_nor_torch():
    import sys

    code = (
        "import sys, gputop.commands.exporter, gputop.commands.serve\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {'textual', 'torch', 'pynvml'})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    assert exporter.PREFIX == "gputop_"


DASHBOARD = pathlib.Path(__file__).resolve().parents[1] / "grafana" / "gputop-dashboard.json"


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs


@pytest.mark.unit
def test_dashboard_uses_only_exported_names_and_has_its_variables():
    dash = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"hostname", "gpu"} <= variables.keys()
    exposed = set()
    cpu_with_rapl = dataclasses.replace(CPU, cpu_power_w=65.0)
    for s in (Sample(TS_NS, cpu_with_rapl, (full_gpu(0), GpuSample(info(1), lost=True))), Sample(TS_NS, CPU, (), gpu_unavailable="none")):
        _, fam = scrape(s)
        exposed |= {x.name for f in fam.values() for x in f.samples}
    used = {n for e in _dashboard_exprs() for n in re.findall(r"gputop_[a-z0-9_]+", e)}
    assert used and used <= exposed, used - exposed
    for p in dash["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]


@pytest.mark.e2e
@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path):
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:q{i}", "expr": e.replace("$hostname", ".*").replace("$gpu", ".*")}
                    for i, e in enumerate(_dashboard_exprs())
                    if not e.startswith("label_values(")
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    out = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


# ---- serve --run: a launched job's ranks ---------------------------------------------------


def rank_row(rank: int, **kw) -> RankRow:
    return row(rank, **{"device": "cuda:0", "device_uuid": f"GPU-{rank:08d}-aaaa", "steps": 30, **kw})


def job_figures(**state) -> JobFigures:
    ranks = (rank_row(0, data_wait_share=None), rank_row(1, data_wait_share=0.87, state="waiting", device_uuid=None))
    values = dict(status="running", samples_per_s=381.5, ranks=ranks, straggler=RankStraggler(1, "data loader", "rank 1 waits 87 % ..."))
    values.update(state)
    totals = {0: RankTotal(30, 120), 1: RankTotal(29, None)}
    return JobFigures("3f2a-run", tui_fixtures.silent(**values), totals)


def scrape_job(job: JobFigures) -> tuple[str, dict]:
    exp = Exporter(hostname="node1", interval_s=1.0)
    exp.update(Sample(TS_NS, CPU, (full_gpu(0),)), job)
    registry = CollectorRegistry()
    registry.register(exp)
    text = generate_latest(registry).decode()
    return text, {f.name: f for f in text_string_to_metric_families(text)}


@pytest.mark.unit
def test_a_jobs_ranks_are_series_labelled_by_run_and_rank_and_a_value_not_given_is_no_series():
    text, fam = scrape_job(job_figures())
    key = dict(hostname="node1", run="3f2a-run")
    assert one(fam, "gputop_workload_steps_total", rank="0", **key) == 30
    assert one(fam, "gputop_workload_steps_total", rank="1", **key) == 29
    assert fam["gputop_workload_steps"].type == "counter" and fam["gputop_workload_samples"].type == "counter"
    assert series(fam, "gputop_workload_samples_total") == {(("hostname", "node1"), ("rank", "0"), ("run", "3f2a-run")): 120}
    assert one(fam, "gputop_workload_step_p50_seconds", rank="1") == pytest.approx(0.0206)
    assert one(fam, "gputop_workload_steps_per_second", rank="0") == 48.5
    assert [dict(k)["rank"] for k in series(fam, "gputop_workload_data_wait_ratio")] == ["1"]  # rank 0: no DataLoader
    assert one(fam, "gputop_workload_data_wait_ratio", rank="1") == pytest.approx(0.87)
    # enumerations: every value, 1 for the current one
    states = {(dict(k)["rank"], dict(k)["state"]): v for k, v in series(fam, "gputop_workload_rank_state").items()}
    assert states == {(r, s): float((r, s) in {("0", "stepping"), ("1", "waiting")}) for r in "01" for s in exporter.RANK_STATES}
    status = {dict(k)["status"]: v for k, v in series(fam, "gputop_workload_status").items()}
    assert status == {s: float(s == "running") for s in exporter.JOB_STATUSES}
    (straggler,) = series(fam, "gputop_workload_straggler")
    assert dict(straggler) == dict(key, rank="1", reason="data loader")
    assert one(fam, "gputop_workload_samples_per_second", **key) == 381.5
    assert one(fam, "gputop_workload_ranks") == 2
    info = {dict(k)["rank"]: dict(k) for k in series(fam, "gputop_workload_rank_info")}
    assert info["0"]["device"] == "cuda:0" and info["0"]["uuid"] == "GPU-00000000-aaaa" and "uuid" not in info["1"]
    assert dict(next(iter(series(fam, "gputop_workload_info"))))["workload"] == "train.py"
    for f in fam.values():  # bounded labels: never a pid or a step
        for s in f.samples:
            assert not {"pid", "step"} & s.labels.keys() and "job" not in s.labels, s
    # no straggler, no rate, no ranks: no such series
    _, fam = scrape_job(job_figures(straggler=None, samples_per_s=None, ranks=()))
    assert not {"gputop_workload_straggler", "gputop_workload_samples_per_second", "gputop_workload_steps"} & fam.keys()
    assert one(fam, "gputop_workload_ranks") == 0
    # without --run: none of these at all
    _, fam = scrape(Sample(TS_NS, CPU, (full_gpu(0),)))
    assert not [n for n in fam if n.startswith("gputop_workload")]


@pytest.mark.unit
def test_the_job_series_names_follow_the_conventions():
    for stem, _ in (*exporter.RANK_GAUGES.values(), *exporter.RANK_COUNTERS.values()):
        assert re.fullmatch(r"[a-z][a-z0-9_]*", stem) and not re.search(r"_(total|count|sum|bucket)$", stem), stem
    assert exporter.RANK_GAUGES["data_wait_share"][0].endswith("_ratio")
    assert exporter.RANK_GAUGES["step_p50_s"][0].endswith("_seconds")


@pytest.mark.e2e
@needs_promtool
def test_promtool_accepts_a_jobs_exposition():
    for job in (job_figures(), job_figures(straggler=RankStraggler(0, None, "?"), status="failed")):
        text, _ = scrape_job(job)
        out = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr
