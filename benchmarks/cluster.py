"""One `gputop cluster` refresh against a real Prometheus holding a simulated fleet, by node count.

Run by hand:  .venv/bin/python benchmarks/cluster.py [--nodes 32,64,128,256] [--repeats 15]
              [--screenshot screenshots/cluster-160x45.svg]

For each node count it writes ten minutes of a simulated fleet as OpenMetrics (every node a
dcgm-exporter on :9400 with 8 GPUs and 7 fields, beside a node-exporter on :9100 with 32 cores x
2 modes and node_uname_info; a sample every 15 s; hostnames "sim-NNN", GPUs named "... (simulated)"),
backfills a TSDB with `promtool tsdb create-blocks-from openmetrics`, starts a Prometheus over it
(no scrapes) and times, ``--repeats`` times after one warm-up:

- refresh: ``ClusterFeed.refresh()``, the queries (4 per refresh: up, GPU values, hosts, serve
  --run's jobs) and the decode into nodes;
- render: handing those samples to a headless ``ClusterApp``, apart from the refreshes (the
  app's own history thread would otherwise run during them): wall = filling the table; CPU = that
  plus all Textual does in the 0.2 s after (layout, paint, and the selected node's history query);
- history: ``ClusterFeed.history(node)``, the selected node's range query (10 min, 5 s steps).

Wall time (``time.perf_counter``) and this process's CPU time (``time.process_time``: the HTTP
client, JSON decoding, our code and Textual's); Prometheus's own CPU for the refresh from its
/proc/<pid>/stat. Medians. The queries are evaluated at the data's last timestamp.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]

from gputop.cluster.client import Prometheus  # noqa: E402
from gputop.cluster.fleet import ClusterFeed  # noqa: E402

GPUS, CORES, STEP_S, SPAN_S = 8, 32, 15, 600
MODEL = "NVIDIA H100 80GB HBM3 (simulated)"


def openmetrics(nodes: int, end: int) -> str:
    """The simulated fleet: deterministic values that move with time, some GPUs idle with memory."""
    stamps = range(end - SPAN_S, end + 1, STEP_S)
    out: list[str] = []

    def family(name: str, series) -> None:
        out.append(f"# TYPE {name} gauge")
        for labels, value in series:
            out.extend(f"{name}{{{labels}}} {value(t):.6g} {t}" for t in stamps)

    def gpus():
        for n in range(nodes):
            for g in range(GPUS):
                yield (
                    n,
                    g,
                    (
                        f'instance="sim-{n:03d}:9400",job="dcgm",gpu="{g}",'
                        f'UUID="GPU-{n:08x}-0000-0000-0000-{g:012x}",modelName="{MODEL}",'
                        f'Hostname="sim-{n:03d}"'
                    ),
                )

    def busy(n: int, g: int) -> bool:
        return (n * GPUS + g) % 5 != 0  # one GPU in five idle

    family(
        "DCGM_FI_PROF_SM_ACTIVE",
        ((lab, (lambda t, n=n, g=g: 0.0 if not busy(n, g) else 0.45 + 0.5 * ((t // STEP_S + n + g) % 10) / 10)) for n, g, lab in gpus()),
    )
    family("DCGM_FI_DEV_GPU_UTIL", ((lab, (lambda t, n=n, g=g: 0 if not busy(n, g) else 90 + (g % 3) * 4)) for n, g, lab in gpus()))

    def used(n: int, g: int) -> int:  # an idle GPU on one node in three still holds its memory
        return 20000 + 1000 * g if busy(n, g) or n % 3 == 0 else 0

    family("DCGM_FI_DEV_FB_USED", ((lab, (lambda t, n=n, g=g: used(n, g))) for n, g, lab in gpus()))
    family("DCGM_FI_DEV_FB_FREE", ((lab, (lambda t, n=n, g=g: 81000 - used(n, g))) for n, g, lab in gpus()))
    family("DCGM_FI_DEV_FB_RESERVED", ((lab, (lambda t: 559)) for n, g, lab in gpus()))
    family(
        "DCGM_FI_DEV_POWER_USAGE",
        ((lab, (lambda t, n=n, g=g: 70 + (560 if busy(n, g) else 0) * (0.6 + 0.4 * ((t // STEP_S + g) % 7) / 7))) for n, g, lab in gpus()),
    )
    family("DCGM_FI_DEV_GPU_TEMP", ((lab, (lambda t, n=n, g=g: 35 + (30 if busy(n, g) else 0) + g)) for n, g, lab in gpus()))
    family(
        "node_cpu_seconds_total",
        (
            (
                f'instance="sim-{n:03d}:9100",job="node",cpu="{c}",mode="{mode}"',
                (lambda t, c=c, mode=mode, n=n: (t - end + SPAN_S + 1e6) * (0.25 + 0.5 * ((n + c) % 3) / 2 if mode == "user" else 0.2)),
            )
            for n in range(nodes)
            for c in range(CORES)
            for mode in ("idle", "user")
        ),
    )
    family("node_uname_info", ((f'instance="sim-{n:03d}:9100",job="node",nodename="sim-{n:03d}"', (lambda t: 1)) for n in range(nodes)))
    family(
        "up",
        (
            (f'instance="sim-{n:03d}:{port}",job="{job}"', (lambda t: 1))
            for n in range(nodes)
            for job, port in (("dcgm", 9400), ("node", 9100))
        ),
    )
    out.append("# EOF")
    return "\n".join(out) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_s(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, data: pathlib.Path) -> None:
        config = data.parent / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("Prometheus did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def median(values: list[float]) -> float:
    return statistics.median(values)


def measure_refresh(feed: ClusterFeed, server: Server, repeats: int) -> tuple[dict[str, float], list]:
    """Refresh and history, in this thread, no app running: the feed's cost alone."""
    results: dict[str, list[float]] = {k: [] for k in ("wall", "cpu", "prom_cpu", "hist_wall", "hist_cpu")}
    samples = []
    for i in range(repeats + 1):
        p0, c0, w0 = proc_cpu_s(server.proc.pid), time.process_time(), time.perf_counter()
        sample = feed.refresh()
        w1, c1, p1 = time.perf_counter(), time.process_time(), proc_cpu_s(server.proc.pid)
        feed.history(sample.nodes[len(sample.nodes) // 2])
        w2, c2 = time.perf_counter(), time.process_time()
        samples.append(sample)
        if i == 0:
            continue  # warm-up
        for k, v in (("wall", w1 - w0), ("cpu", c1 - c0), ("prom_cpu", p1 - p0), ("hist_wall", w2 - w1), ("hist_cpu", c2 - c1)):
            results[k].append(v)
    return {k: median(v) for k, v in results.items()}, samples


class Replay:
    """The samples already fetched, for the render timing (no queries, no history threads)."""

    def __init__(self, feed: ClusterFeed, samples: list) -> None:
        self.feed, self.samples = feed, samples
        self.prom = feed.prom

    def refresh(self):
        return self.samples[-1]

    def history(self, node):
        return self.feed.history(node)


async def measure_render(replay: Replay, screenshot: str | None) -> dict[str, float]:
    """Handing each sample to a headless ClusterApp: the table filled, a frame painted."""
    from gputop.tui.cluster import ClusterApp

    app = ClusterApp(replay, interval_s=3600)
    results: dict[str, list[float]] = {"render_wall": [], "render_cpu": []}
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause(0.5)
        c0 = time.process_time()
        await pilot.pause(0.2)
        results["idle_cpu"] = [time.process_time() - c0]  # the app doing nothing for 0.2 s
        for sample in replay.samples[1:]:
            c0, w0 = time.process_time(), time.perf_counter()
            app.sample = sample  # fills the table (a watcher, at once)
            w1 = time.perf_counter()
            await pilot.pause(0.2)  # then Textual lays out and paints at its own pace
            results["render_wall"].append(w1 - w0)
            results["render_cpu"].append(time.process_time() - c0)
    if screenshot:
        shot = ClusterApp(replay, interval_s=5, source="(a simulated fleet, backfilled)")
        async with shot.run_test(size=(160, 45)) as pilot:
            await pilot.pause(0.5)
            await pilot.press("s")  # sort by power
            await pilot.pause(1.5)  # the selected node's history arrives from its thread
            shot.save_screenshot(os.path.basename(screenshot), path=os.path.dirname(screenshot) or ".")
    return {k: median(v) for k, v in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", default="32,64,128,256")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--screenshot", default=None, help="save an SVG of the view (first node count)")
    args = parser.parse_args()
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        raise SystemExit("needs prometheus and promtool (apt-get install prometheus)")
    print(
        "| nodes x GPUs | series | refresh wall | refresh CPU (ours) | Prometheus CPU | "
        "table fill wall | render CPU (idle) | refresh+render CPU | history wall | history CPU |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k, nodes in enumerate(int(n) for n in args.nodes.split(",")):
        with tempfile.TemporaryDirectory(prefix="gputop-bench-") as tmp:
            tmp_path = pathlib.Path(tmp)
            end = int(time.time()) - 60
            om = tmp_path / "fleet.om"
            om.write_text(openmetrics(nodes, end))
            data = tmp_path / "data"
            subprocess.run(
                ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)], check=True, stdout=subprocess.DEVNULL
            )
            om.unlink()
            server = Server(data)
            try:
                prom = Prometheus(server.url, timeout_s=60)
                feed = ClusterFeed(prom, clock=lambda end=end: float(end))
                series = nodes * (GPUS * 7 + CORES * 2 + 1 + 2)
                r, samples = measure_refresh(feed, server, args.repeats)
                r.update(asyncio.run(measure_render(Replay(feed, samples), args.screenshot if k == 0 else None)))
                assert len(feed.refresh().nodes) == nodes
                ms = {key: v * 1000 for key, v in r.items()}
                print(
                    f"| {nodes} x {GPUS} | {series} | {ms['wall']:.0f} ms | {ms['cpu']:.0f} ms | "
                    f"{ms['prom_cpu']:.0f} ms | {ms['render_wall']:.0f} ms | {ms['render_cpu']:.0f} ms ({ms['idle_cpu']:.0f}) | "
                    f"{ms['cpu'] + ms['render_cpu']:.0f} ms | {ms['hist_wall']:.0f} ms | {ms['hist_cpu']:.0f} ms |",
                    flush=True,
                )
                prom.close()
            finally:
                server.stop()


if __name__ == "__main__":
    main()
