"""`gputop cluster` against a real Prometheus on loopback, scraping real exporters: three
`gputop serve` processes on the NVML fake (127.0.0.2-4) and, on 127.0.0.5, a static
dcgm-exporter exposition beside a real node-exporter. One Prometheus for the module (1 s scrapes);
the test that stops an exporter runs last."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from cluster_fixtures import (
    APT,
    DCGM_FIELDS,
    DCGM_HOSTNAME,
    NODE_EXPORTER,
    PROMETHEUS,
    AuthProxy,
    NodeExporter,
    Prometheus,
    Silent,
    StaticExposition,
    dcgm_exposition,
    free_port,
)
from gputop.cluster.client import Prometheus as Client
from gputop.cluster.fleet import ClusterFeed
from gputop.cluster.names import MIB
from helpers import Served, Terminal, wait_for

pytestmark = [
    pytest.mark.xdist_group("cluster"),  # the fleet (a real Prometheus and its targets) once, on one worker
    pytest.mark.skipif(PROMETHEUS is None, reason=f"prometheus not installed ({APT})"),
    pytest.mark.skipif(NODE_EXPORTER is None, reason=f"prometheus-node-exporter not installed ({APT})"),
]

SCRAPE_S = 1.0
SERVES = {"127.0.0.2": "H100_SXM*2", "127.0.0.3": "A100_SXM", "127.0.0.4": "CONSUMER"}
DCGM_HOST = "127.0.0.5"
GPU_COUNTS = {"127.0.0.2": 2, "127.0.0.3": 1, "127.0.0.4": 1, DCGM_HOST: 4}


def _port(addr: str, preferred: int) -> int:
    try:
        import socket

        with socket.socket() as s:
            s.bind((addr, preferred))
        return preferred
    except OSError:
        return free_port(addr)


class Fleet:
    def __init__(self, tmp) -> None:
        self.served: dict[str, Served] = {}
        self.things: list = []
        with ThreadPoolExecutor(len(SERVES)) as pool:  # each start imports gputop: in parallel
            futures = {
                addr: pool.submit(Served, "--addr", addr, "--port", "0", "--interval", "0.5", fake=fake) for addr, fake in SERVES.items()
            }
            for addr, fut in futures.items():
                self.served[addr] = fut.result()
        self.dcgm_target = f"{DCGM_HOST}:{_port(DCGM_HOST, 9400)}"
        self.things.append(StaticExposition(DCGM_HOST, int(self.dcgm_target.split(":")[1]), dcgm_exposition()))
        self.node = NodeExporter(DCGM_HOST, _port(DCGM_HOST, 9100))
        self.things.append(self.node)
        self.prom = Prometheus(
            tmp,
            {"gputop": [f"{a}:{s.port}" for a, s in self.served.items()], "dcgm": [self.dcgm_target], "node": [self.node.target]},
            scrape_s=SCRAPE_S,
        )
        self.things.append(self.prom)

    def feed(self, selector: str | None = None) -> ClusterFeed:
        return ClusterFeed(Client(self.prom.url, timeout_s=5), selector)

    def stop(self) -> None:
        for s in self.served.values():
            s.stop()
        for t in reversed(self.things):
            t.stop()


def _complete(sample) -> bool:
    got = {n.host: n for n in sample.nodes}
    return (
        set(got) == set(GPU_COUNTS)
        and all(len(got[h].gpus) == c for h, c in GPU_COUNTS.items())
        and got[DCGM_HOST].cores_busy is not None  # node-exporter scraped twice (irate)
        and all(g.sm_active_pct is not None for g in got["127.0.0.2"].gpus)
    )  # GPM's 2nd sample


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    fleet = Fleet(tmp_path_factory.mktemp("prom"))
    try:
        feed = fleet.feed()
        wait_for(lambda: _complete(feed.refresh()), 40, "Prometheus never had every node's series")
        yield fleet
    finally:
        fleet.stop()


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gputop", "cluster", *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def one_line_error(out: subprocess.CompletedProcess, rc: int, *words: str) -> None:
    assert out.returncode == rc, (out.returncode, out.stdout, out.stderr)
    assert out.stdout == "" and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("gputop cluster: error: "), out.stderr
    for w in words:
        assert w in out.stderr, out.stderr


# ------------------------------------------------------------------------------ --once --json


@pytest.mark.e2e
def test_once_json_one_node_per_host_with_values_and_units(fleet):
    out = cli("--prometheus", fleet.prom.url, "--once", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    nodes = {n["host"]: n for n in doc["nodes"]}
    assert set(nodes) == set(GPU_COUNTS)
    assert {h: len(n["gpus"]) for h, n in nodes.items()} == GPU_COUNTS
    raw = {
        (r["metric"]["instance"], r["metric"]["gpu"], r["metric"]["__name__"]): float(r["value"][1])
        for r in fleet.prom.query('{__name__=~"gputop_gpu_memory_(used|capacity)_bytes"}')
    }

    h100 = nodes["127.0.0.2"]
    assert h100["source"] == "gputop" and not h100["stale"]
    assert h100["instances"] == [f"127.0.0.2:{fleet.served['127.0.0.2'].port}"]
    for g in h100["gpus"]:
        assert g["name"] == "NVIDIA H100 80GB HBM3" and g["uuid"].startswith("GPU-")
        assert 60 < g["sm_active_pct"] < 90  # ratio x 100
        assert 400 < g["power_w"] < 640 and 20 < g["temp_c"] < 95
        key = (h100["instances"][0], str(g["index"]))
        assert g["mem_total_bytes"] == raw[key + ("gputop_gpu_memory_capacity_bytes",)] > 70 * 2**30
        assert g["mem_used_bytes"] == raw[key + ("gputop_gpu_memory_used_bytes",)]
    assert h100["cores"] == os.cpu_count() and 0 <= h100["cores_busy"] <= h100["cores"]
    (a100,) = nodes["127.0.0.3"]["gpus"]
    assert a100["sm_active_pct"] is None and 0 <= a100["gpu_util_pct"] <= 100  # no GPM before Hopper

    dcgm = nodes[DCGM_HOST]
    assert dcgm["source"] == "dcgm" and dcgm["hostname"] == DCGM_HOSTNAME
    assert sorted(dcgm["instances"]) == sorted([fleet.dcgm_target, fleet.node.target])
    assert dcgm["cores"] == os.cpu_count() and 0 <= dcgm["cores_busy"] <= dcgm["cores"]  # node-exporter
    g0, g1, g2, g3 = dcgm["gpus"]
    fields = {k: v[2] for k, v in DCGM_FIELDS.items()}
    assert g0["sm_active_pct"] == pytest.approx(87.5) and g0["gpu_util_pct"] == 98
    assert g0["mem_used_bytes"] == 60535 * MIB
    assert g0["mem_total_bytes"] == (60535 + 20000 + 540) * MIB
    assert g0["power_w"] == 612.5 and g0["temp_c"] == 61
    assert g0["name"] == "NVIDIA H100 80GB HBM3" and g0["uuid"].startswith("GPU-5e1f")
    assert [g["idle_with_memory"] for g in (g0, g1, g2, g3)] == [False, False, True, False]
    assert g3["temp_c"] is None and g3["sm_active_pct"] is None  # blanks: n/a, not 9.2e18
    assert g3["gpu_util_pct"] == 40 and float(fields["DCGM_FI_DEV_GPU_TEMP"][3]) > 2**62

    t = doc["totals"]
    assert t["nodes"] == 4 and t["gpus"] == 8 and t["stale_nodes"] == 0 and t["idle_with_memory"] >= 1
    assert t["power_w"] == pytest.approx(sum(g["power_w"] for n in doc["nodes"] for g in n["gpus"] if g["power_w"] is not None))


@pytest.mark.e2e  # the fleet fixture: a real Prometheus scraping real exporters
def test_queries_per_refresh_do_not_grow_with_nodes(fleet):
    feed = fleet.feed()
    feed.refresh()
    assert feed.queries_asked == 5  # up, GPU values, GPU names, hosts' CPU and names, jobs: for 4 nodes as for 400
    node = next(n for n in feed.refresh().nodes if n.host == DCGM_HOST)
    history = feed.history(node)
    assert feed.queries_asked == 10  # the second refresh reuses the GPUs' names
    assert [g.index for g in history.gpus] == [0, 1, 2, 3]
    sm = history.gpus[0].series["sm_active_pct"]
    assert sm and sm[-1][1] == pytest.approx(87.5)  # (one point per 5 s: the module is young)
    assert history.gpus[2].series["mem_used_bytes"][-1][1] == 20000 * MIB


@pytest.mark.e2e
def test_selector_limits_every_query(fleet):
    out = cli("--prometheus", fleet.prom.url, "--once", "--json", "--selector", '{job="dcgm"}')
    assert out.returncode == 0, out.stderr
    (node,) = json.loads(out.stdout)["nodes"]
    assert node["host"] == DCGM_HOST and len(node["gpus"]) == 4
    assert node["instances"] == [fleet.dcgm_target] and node["cores"] is None  # node-exporter excluded


@pytest.mark.e2e
def test_text_once(fleet):
    out = cli("--prometheus", fleet.prom.url, "--once")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("4 nodes (0 stale)")
    assert "idle holding memory" in out.stdout and DCGM_HOSTNAME in out.stdout
    assert "9223372036854775794" not in out.stdout and "9.2e" not in out.stdout


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.e2e
@pytest.mark.parametrize(
    "selector, words",
    [
        ('{job=~"("}', ["Prometheus rejected --selector"]),
        ("{job=}", ["Prometheus rejected --selector"]),
        ('up{job="gputop"}', ["label matchers in braces"]),
    ],
)
def test_bad_selector_is_one_line_exit_2(fleet, selector, words):
    one_line_error(cli("--prometheus", fleet.prom.url, "--once", "--selector", selector), 2, *words)


@pytest.mark.e2e
def test_dead_prometheus_is_one_line_exit_1():
    url = f"http://127.0.0.1:{free_port()}"
    one_line_error(cli("--prometheus", url, "--once"), 1, "cannot connect to Prometheus at " + url)


@pytest.mark.e2e
def test_not_prometheus_is_one_line_exit_1():
    server = StaticExposition("127.0.0.1", 0, "not prometheus\n")
    url = f"http://127.0.0.1:{server.server.server_address[1]}"
    try:
        one_line_error(cli("--prometheus", url, "--once"), 1, "does not look like Prometheus")
    finally:
        server.stop()


@pytest.mark.e2e
def test_hung_server_times_out_in_one_line():
    silent = Silent()
    try:
        t0 = time.monotonic()
        one_line_error(cli("--prometheus", silent.url, "--once", "--timeout", "0.5"), 1, "did not answer within 0.5 s")
        assert time.monotonic() - t0 < 15
    finally:
        silent.stop()


@pytest.mark.e2e
def test_bearer_token_and_basic_auth(fleet, tmp_path):
    import base64

    basic = "Basic " + base64.b64encode(b"ops:pa55word").decode()
    proxy = AuthProxy(fleet.prom.url, {"Bearer s3cret", basic})
    try:
        token = tmp_path / "token"
        token.write_text("s3cret\n")
        out = cli("--prometheus", proxy.url, "--once", "--json", "--bearer-token-file", str(token))
        assert out.returncode == 0, out.stderr
        assert len(json.loads(out.stdout)["nodes"]) == 4
        with_user = proxy.url.replace("http://", "http://ops:pa55word@")
        out = cli("--prometheus", with_user, "--once", "--json")
        assert out.returncode == 0, out.stderr
        one_line_error(cli("--prometheus", proxy.url, "--once"), 1, "HTTP 401", "--bearer-token-file")
        wrong = proxy.url.replace("http://", "http://ops:wrong-secret@")
        out = cli("--prometheus", wrong, "--once")
        one_line_error(out, 1, "HTTP 401")
        assert "wrong-secret" not in out.stderr  # the password never appears
        one_line_error(
            cli("--prometheus", proxy.url, "--once", "--bearer-token-file", str(tmp_path / "nope")),
            2,
            "cannot read --bearer-token-file",
            "No such file",
        )
    finally:
        proxy.stop()


@pytest.mark.e2e
@pytest.mark.parametrize(
    "args, words",
    [
        (["--json"], ["--json goes with --once"]),
        (["--prometheus", "ftp://127.0.0.1/", "--once"], ["not an http(s) URL"]),
        (["--prometheus", "http://127.0.0.1:99999", "--once"], ["port must be between 1 and 65535, got 99999"]),
        (["--prometheus", "http://127.0.0.1:0/", "--once"], ["port must be between 1 and 65535, got 0"]),
        ([], ["needs a terminal"]),
    ],
)
def test_usage_errors(args, words):
    one_line_error(cli(*args), 2, *words)


# ----------------------------------------------------------------------------- the TUI (Pilot)


@pytest.mark.e2e  # a Pilot app, but over the fleet fixture's real Prometheus
async def test_tui_selecting_a_node_shows_its_history(fleet):
    from gputop.tui.cluster import ClusterApp, NodeDetail

    app = ClusterApp(fleet.feed(), interval_s=60)
    async with app.run_test(size=(160, 40)) as pilot:
        await _until(pilot, lambda: app.sample is not None)
        assert sorted(app.row_hosts()) == sorted(GPU_COUNTS)
        for _ in range(app.row_hosts().index(DCGM_HOST)):
            await pilot.press("down")
        detail = app.query_one(NodeDetail)
        await _until(pilot, lambda: detail.history is not None and detail.history.host == DCGM_HOST)
        assert len(detail.history.gpus) == 4
        text = detail.text_for(150).plain
        assert DCGM_HOSTNAME in text and "idle holding memory" in text and "SMs 88 %" in text


async def _until(pilot, cond, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


@pytest.mark.e2e
@pytest.mark.parametrize("controlling", [True, False], ids=["sighup", "no-sighup"])
def test_the_cluster_view_ends_with_its_terminal(fleet, controlling):
    """On a real pseudo-terminal that hangs up (see test_tui_hangup.py), with or without a SIGHUP."""
    term = Terminal(["cluster", "--prometheus", fleet.prom.url, "--interval", "1"], controlling)
    try:
        assert term.drawn_then_hung_up() == 0
    finally:
        term.close()


# ------------------------------------------------------------- last: an exporter stops answering


@pytest.mark.e2e
def test_stopping_a_serve_makes_its_node_stale_within_two_scrapes(fleet):
    feed = fleet.feed()
    before = {n.host: n for n in feed.refresh().nodes}
    assert not before["127.0.0.4"].stale
    stopping = time.time()  # (its port closes before its process has ended)
    assert fleet.served["127.0.0.4"].stop(signal.SIGTERM) == 0
    asked: list[float] = []

    def stale_node():
        asked.append(time.time())  # (the refresh that sees it stale begins here)
        return next((n for n in feed.refresh().nodes if n.host == "127.0.0.4" and n.stale), None)

    stale = wait_for(stale_node, 30, "the stopped node never turned stale")
    # counted in Prometheus's own scrapes, not in seconds (on a loaded machine its scrapes come
    # late): stale by its first or second failed scrape after the stop
    (series,) = fleet.prom.query('up{instance=~"127\\\\.0\\\\.0\\\\.4:.*"}[120s]')
    scrapes = [(float(ts), value) for ts, value in series["values"]]
    last_good = max(ts for ts, value in scrapes if value == "1")
    failed = [ts for ts, value in scrapes if last_good < ts <= asked[-1]]  # (a scrape begun as it stopped counts)
    assert 1 <= len(failed) <= 2, (scrapes, stopping, asked)
    assert last_good <= asked[0] and stale.stale_since == pytest.approx(last_good, abs=1.0)  # to the second
    assert len(stale.gpus) == 1  # what it last had, flagged stale
    others = [n for n in feed.refresh().nodes if n.host != "127.0.0.4"]
    assert not any(n.stale for n in others)
    out = cli("--prometheus", fleet.prom.url, "--once", "--json")
    nodes = {n["host"]: n for n in json.loads(out.stdout)["nodes"]}
    assert nodes["127.0.0.4"]["stale"] and json.loads(out.stdout)["totals"]["stale_nodes"] == 1
