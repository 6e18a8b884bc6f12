"""`gputop cluster` against a real Prometheus scraping AMD's device-metrics-exporter names (a static
exposition in its default names and labels, two MI300X and one MI250X die on 127.0.0.6) beside a
`gputop serve` on the libamd_smi fake (127.0.0.7): both read as per-node GPUs in gputop's units."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cluster_fixtures import APT, PROMETHEUS, Prometheus, StaticExposition, free_port
from gputop.cluster.names import MIB
from helpers import Served, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(PROMETHEUS is None, reason=f"prometheus not installed ({APT})")]

AMD_HOST, SERVE_HOST = "127.0.0.6", "127.0.0.7"
# name -> per GPU (gpu_id 0, 1, 2) value; "" is no series (MI300X has no edge sensor; MI3xx export
# package power, MI2xx the average)
AMD_FIELDS = {
    "gpu_gfx_activity": ("87", "2", "55"),
    "gpu_umc_activity": ("61", "0", "20"),
    "gpu_used_vram": ("40960", "12", "8000"),
    "gpu_total_vram": ("196592", "196592", "65520"),
    "gpu_package_power": ("612", "141", ""),
    "gpu_average_package_power": ("", "", "402"),
    "gpu_edge_temperature": ("", "", "44"),
    "gpu_junction_temperature": ("71", "40", "52"),
}
MODELS = ("AMD Instinct MI300X", "AMD Instinct MI300X", "AMD Instinct MI250X")


def amd_exposition() -> str:
    lines = []
    for name, values in AMD_FIELDS.items():
        lines += [f"# HELP {name} {name}", f"# TYPE {name} gauge"]
        for i, value in enumerate(values):
            if value:
                labels = f'gpu_id="{i}",gpu_uuid="9e{i}f74a1-0000-1000-80{i}0",card_model="{MODELS[i]}",hostname="amd-node-6",serial_number="PX{i}"'
                lines.append(f"{name}{{{labels}}} {value}")
    return "\n".join(lines) + "\n"


def test_cluster_reads_amd_exporter_names_and_gputop_on_amd(tmp_path):
    port = free_port(AMD_HOST)
    static = StaticExposition(AMD_HOST, port, amd_exposition())
    served = Served("--addr", SERVE_HOST, "--port", "0", "--interval", "0.5", fake=None, amd="MI300X")
    prom = None
    try:
        prom = Prometheus(tmp_path, {"amd": [f"{AMD_HOST}:{port}"], "gputop": [f"{SERVE_HOST}:{served.port}"]}, scrape_s=1.0)

        def once() -> dict | None:
            out = subprocess.run(
                [sys.executable, "-m", "gputop", "cluster", "--prometheus", prom.url, "--once", "--json"],
                capture_output=True,
                text=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
            )
            assert out.returncode == 0, out.stderr
            doc = json.loads(out.stdout)
            nodes = {n["host"]: n for n in doc["nodes"]}
            return nodes if len(nodes.get(AMD_HOST, {}).get("gpus", ())) == 3 and nodes.get(SERVE_HOST, {}).get("gpus") else None

        nodes = wait_for(once, 60, "Prometheus never had both AMD nodes' series")
    finally:
        if prom is not None:
            prom.stop()
        served.stop()
        static.stop()
    amd = nodes[AMD_HOST]
    assert (amd["source"], amd["hostname"]) == ("amd", "amd-node-6")
    g0, g1, g2 = amd["gpus"]
    assert (g0["name"], g0["uuid"]) == ("AMD Instinct MI300X", "9e0f74a1-0000-1000-8000")
    assert (g0["gpu_util_pct"], g0["mem_used_bytes"], g0["mem_total_bytes"], g0["power_w"]) == (87.0, 40960 * MIB, 196592 * MIB, 612.0)
    assert g0["temp_c"] is None and g0["sm_active_pct"] is None  # no edge sensor; no SM activity on AMD
    assert (g2["power_w"], g2["temp_c"]) == (402.0, 44.0)  # MI250X: the average package power, edge
    assert g1["idle_with_memory"] is False  # 12 MB held
    (ours,) = nodes[SERVE_HOST]["gpus"]
    assert ours["name"] == "AMD Instinct MI300X" and nodes[SERVE_HOST]["source"] == "gputop"
    assert 0 <= ours["gpu_util_pct"] <= 100 and ours["power_w"] > 0 and ours["mem_total_bytes"] == 192 * 2**30
