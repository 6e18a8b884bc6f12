"""The cluster view's pure parts: names and units, the queries, decoding answers into nodes, and
the TUI over a stub feed (sorting, a failing refresh). The real-Prometheus tests: test_cluster.py."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from gputop.cluster import decode, names, promql
from gputop.cluster.fleet import ClusterError, GpuHistory, NodeHistory
from gputop.cluster.nodes import ClusterGpu, ClusterNode, ClusterSample, held_by, to_dict, totals


@pytest.mark.unit
@pytest.mark.parametrize(
    "instance, host",
    [
        ("gpu-7:9400", "gpu-7"),
        ("gpu-7", "gpu-7"),
        ("10.0.0.7:9100", "10.0.0.7"),
        ("[fd00::7]:9100", "fd00::7"),
        ("[::1]", "::1"),
        ("fd00::7", "fd00::7"),
        ("host:abc", "host:abc"),
    ],
)
def test_host_of(instance, host):
    assert names.host_of(instance) == host


@pytest.mark.unit
@pytest.mark.parametrize(
    "value, blank",
    [
        (9223372036854775794, True),
        (9223372036854775792, True),
        (2147483632, True),
        (2147483634, True),
        (140737488355328.0, True),
        (140737488355330.0, True),
        (2147483631, False),
        (2147483648, False),
        (0, False),
        (61, False),
        (140737488355327.0, False),
    ],
)
def test_dcgm_blanks(value, blank):
    assert names.is_dcgm_blank(float(value)) is blank


@pytest.mark.unit
@pytest.mark.parametrize(
    "metric, text, field, value",
    [
        ("DCGM_FI_PROF_SM_ACTIVE", "0.875", "sm_active_pct", 87.5),
        ("DCGM_FI_DEV_GPU_UTIL", "98", "gpu_util_pct", 98.0),
        ("DCGM_FI_DEV_FB_USED", "1024", "mem_used_bytes", 2**30),
        ("DCGM_FI_DEV_POWER_USAGE", "612.5", "power_w", 612.5),
        ("DCGM_FI_DEV_GPU_TEMP", "9223372036854775794", "temp_c", None),
        ("DCGM_FI_DEV_POWER_USAGE", "NaN", "power_w", None),
        ("gputop_gpu_sm_active_ratio", "0.5", "sm_active_pct", 50.0),
        ("gputop_gpu_utilization_ratio", "1", "gpu_util_pct", 100.0),
        ("gputop_gpu_memory_used_bytes", "123", "mem_used_bytes", 123.0),
        ("gputop_gpu_temperature_celsius", "2147483632", "temp_c", 2147483632.0),  # gputop has no blanks
    ],
)
def test_convert(metric, text, field, value):
    f, v = names.convert(metric, text)
    assert f.field == field and v == value


@pytest.mark.unit
def test_convert_ignores_other_names():
    assert names.convert("DCGM_FI_DEV_SM_CLOCK", "1980") is None


@pytest.mark.unit
@pytest.mark.parametrize(
    "selector, inner",
    [
        (None, ""),
        ("", ""),
        ('{job=~"gpu.*"}', 'job=~"gpu.*"'),
        ('job="a", cluster="b"', 'job="a", cluster="b"'),
        ("{ }", ""),
    ],
)
def test_selector_matchers(selector, inner):
    assert promql.matchers(selector) == inner


@pytest.mark.unit
def test_selector_with_a_metric_name_is_refused():
    with pytest.raises(promql.SelectorError, match="label matchers in braces"):
        promql.matchers('up{job="a"}')


@pytest.mark.unit
def test_queries_carry_the_selector_everywhere():
    q = promql.Queries('{cluster="a"}')
    assert q.up == 'up{cluster="a"}'
    assert q.gpus.startswith('max by (__name__, instance, gpu, gpu_id) ({__name__=~"gputop_gpu_sm_active_ratio|')
    assert q.gpus.endswith(', cluster="a"})') and q.gpu_names.endswith(', cluster="a"})')
    assert q.hosts.count('cluster="a"') == 6 and q.hosts.count(" or ") == 5
    assert 'node_cpu_seconds_total{mode="idle", cluster="a"}' in q.hosts
    h = q.history(("gpu-1:9400", "gpu-1:9100"))
    assert h.startswith("max by (__name__, instance, gpu, gpu_id)")
    assert 'instance=~"gpu-1:9400|gpu-1:9100"' in h and 'cluster="a"' in h
    assert 'instance=~"a\\\\.b:1"' in q.stale_since(("a.b:1",))  # a regex escape, as a PromQL string


def _series(metric, value, **labels):
    return {"metric": {"__name__": metric, **labels}, "value": [1.0, value]}


def _part(part, value, **labels):
    return {"metric": {promql.PART: part, **labels}, "value": [1.0, value]}


@pytest.mark.unit
def test_decode_groups_by_host_and_prefers_gputop():
    up = [
        _series("up", "1", instance="n1:9400", job="dcgm"),
        _series("up", "1", instance="n1:9100", job="node"),
        _series("up", "0", instance="n2:9400", job="gputop"),
    ]
    dcgm = dict(instance="n1:9400", gpu="0", UUID="GPU-a", modelName="H100", Hostname="node-one")
    placed = {"instance": "n1:9400", "gpu": "0"}  # the values carry only what places them
    gpus = [
        _series("DCGM_FI_DEV_FB_USED", "100", **placed),
        _series("DCGM_FI_DEV_FB_FREE", "900", **placed),
        _series("DCGM_FI_DEV_GPU_UTIL", "0", **placed),
        _series("gputop_gpu_power_watts", "300", instance="n3:9400", gpu="0"),
        _series("DCGM_FI_DEV_POWER_USAGE", "301", instance="n3:9401", gpu="0"),
    ]
    gpu_names = [
        {"metric": dcgm, "value": [1.0, "1"]},
        {"metric": {"instance": "n3:9400", "gpu": "0", "uuid": "GPU-b", "name": "A100", "hostname": "three"}, "value": [1.0, "1"]},
    ]
    hosts = [
        _part(promql.NODE_CORES, "8", instance="n1:9100"),
        _part(promql.NODE_IDLE, "6.5", instance="n1:9100"),
        _part(promql.UNAME, "1", instance="n1:9100", nodename="uname-one"),
    ]
    (n1, n2, n3), unnamed = decode.nodes(up, gpus, gpu_names, hosts, {("n2:9400", "gputop"): 1234.0})
    assert unnamed == 1  # the DCGM copy on n3:9401 has no names series
    assert (n1.host, n1.hostname, n1.source, n1.cores, n1.cores_busy) == ("n1", "node-one", "dcgm", 8, 1.5)
    assert n1.instances == ("n1:9100", "n1:9400") and not n1.stale
    (g,) = n1.gpus
    assert (g.uuid, g.name) == ("GPU-a", "H100") and n3.hostname == "three"
    assert g.mem_total_bytes == 1000 * names.MIB and g.activity_pct == 0.0 and g.sm_active_pct is None
    assert n2.stale and n2.stale_since == 1234.0 and n2.gpus == ()
    assert n3.source == "gputop" and [x.power_w for x in n3.gpus] == [300.0]  # not DCGM's copy


@pytest.mark.unit
def test_decode_reads_amd_device_metrics_exporter_names():
    """AMD's exporter: percent activity, VRAM in MB (2^20), power in W, the index in gpu_id, the
    name in card_model, the UUID in gpu_uuid; MI300X's power as gpu_package_power, MI250X's as
    gpu_average_package_power, and no edge temperature on MI300X (n/a)."""
    placed = [dict(instance="a1:5000", gpu_id=str(i)) for i in range(2)]
    gpus = [
        _series("gpu_gfx_activity", "87", **placed[0]),
        _series("gpu_used_vram", "40960", **placed[0]),
        _series("gpu_total_vram", "196592", **placed[0]),
        _series("gpu_package_power", "612", **placed[0]),
        _series("gpu_gfx_activity", "3", **placed[1]),
        _series("gpu_average_package_power", "410", **placed[1]),
        _series("gpu_edge_temperature", "44", **placed[1]),
    ]
    gpu_names = [
        {"metric": dict(p, gpu_uuid=f"uuid-{p['gpu_id']}", card_model="MI300X", hostname="amd-one"), "value": [1.0, "1"]} for p in placed
    ]
    up = [_series("up", "1", instance="a1:5000", job="amd")]
    ((node,), unnamed) = decode.nodes(up, gpus, gpu_names, [], {})
    assert unnamed == 0 and (node.source, node.hostname) == ("amd", "amd-one")
    g0, g1 = node.gpus
    assert (g0.index, g0.uuid, g0.name) == (0, "uuid-0", "MI300X")
    assert (g0.activity_pct, g0.mem_used_bytes, g0.mem_total_bytes, g0.power_w) == (87.0, 40960 * names.MIB, 196592 * names.MIB, 612.0)
    assert g0.temp_c is None and g0.sm_active_pct is None
    assert (g1.power_w, g1.temp_c, g1.mem_used_bytes) == (410.0, 44.0, None)


def _gpu(i, sm, util=None, mem=0.0, power=None):
    return ClusterGpu(i, "H100", f"GPU-{i}", sm, util, mem, 80 * 2**30, power, 50.0)


def _node(host, gpus, stale=False, hostname=None):
    return ClusterNode(host, (f"{host}:9400",), hostname, "gputop", stale, 1.0e9 if stale else None, 8, 2.0, tuple(gpus))


@pytest.mark.unit
def test_flags_and_totals():
    idle_held = _gpu(0, 0.0, 0.0, mem=8 * 2**30, power=70)
    trap = _gpu(1, 20.0, 99.0, power=300)
    busy = _gpu(2, 80.0, 95.0, power=600)
    unknown = _gpu(3, None, None)
    assert idle_held.idle_with_memory and not idle_held.busy
    assert trap.util_trap and trap.busy and not busy.util_trap
    assert not unknown.idle_with_memory and not unknown.busy and unknown.activity_pct is None
    nodes = (_node("a", [idle_held, trap]), _node("b", [busy, unknown], stale=True))
    t = totals(nodes)
    # #26.13: the stale node is counted, its last values are not (--once never saw them)
    assert (t.nodes, t.stale_nodes, t.gpus, t.busy_gpus, t.idle_with_memory, t.power_w, t.cores) == (2, 1, 2, 1, 1, 370.0, 8)
    d = to_dict(ClusterSample(5.0, nodes, t))
    assert d["nodes"][0]["gpus"][0]["idle_with_memory"] is True and d["nodes"][1]["stale"] is True
    assert d["nodes"][1]["gpus"][1]["sm_active_pct"] is None  # n/a stays null


# ---------------------------------------------------------------------------- the TUI, stub feed


class StubFeed:
    def __init__(self, nodes):
        self.nodes = tuple(nodes)
        self.fail: str | None = None
        self.history_asked: list[str] = []

    def refresh(self):
        if self.fail is not None:
            raise ClusterError(self.fail)
        return ClusterSample(time.time(), self.nodes, totals(self.nodes))

    def history(self, node):
        self.history_asked.append(node.host)
        points = tuple((1000.0 + 5 * k, float(10 * k)) for k in range(10))
        return NodeHistory(
            node.host,
            1000.0,
            1050.0,
            5.0,
            tuple(GpuHistory(g.index, g.name, {"sm_active_pct": points, "power_w": points}) for g in node.gpus),
        )


def _stub():
    return StubFeed(
        [
            _node("10.0.0.3", [_gpu(0, 90.0, power=650), _gpu(1, 80.0, power=600)], hostname="charlie"),
            _node("10.0.0.1", [_gpu(0, 0.0, 0.0, mem=4 * 2**30, power=80), _gpu(1, 0.0, 0.0, power=75)], hostname="alpha"),
            _node("10.0.0.2", [_gpu(0, 50.0, power=400), _gpu(1, 0.0, 0.0, power=70)], hostname="bravo", stale=True),
        ]
    )


async def _until(pilot, cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


@pytest.mark.tui
async def test_tui_sorts_by_node_power_and_idle_gpus():
    from gputop.tui.cluster import ClusterApp, ClusterHeader

    app = ClusterApp(_stub(), interval_s=60)
    async with app.run_test(size=(160, 40)) as pilot:
        await _until(pilot, lambda: app.sample is not None)
        assert app.row_hosts() == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]  # alpha, bravo, charlie
        await pilot.press("s")
        assert app.row_hosts() == ["10.0.0.3", "10.0.0.2", "10.0.0.1"]  # 1250 W, 470 W, 155 W
        await pilot.press("s")
        assert app.row_hosts() == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]  # 2, 1, 0 idle GPUs
        header = app.query_one(ClusterHeader).text_for(300).plain
        assert "sort idle GPUs" in header and "GPUs busy 2 of 4" in header  # bravo is stale: not counted
        assert "nodes 3 (1 stale, not in the totals)" in header


@pytest.mark.tui
async def test_the_cli_s_cluster_view_freezes_start_up_objects_after_mount_and_a_test_s_never():
    """As the live view (settle_heap): the CLI's ClusterApp collects, freezes and enables the
    collector (held while it started) once, settle_heap_s after mount."""
    import gc

    from gputop.tui.cluster import ClusterApp

    assert gc.get_freeze_count() == 0
    plain = ClusterApp(_stub(), interval_s=60)
    settling = ClusterApp(_stub(), interval_s=60, settle_heap_s=0.05)
    try:
        async with plain.run_test(size=(160, 40)) as pilot:
            await _until(pilot, lambda: plain.sample is not None)
            await pilot.pause(0.2)
            assert gc.get_freeze_count() == 0
        gc.disable()
        async with settling.run_test(size=(160, 40)) as pilot:
            await _until(pilot, lambda: gc.get_freeze_count() > 0)
            assert gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


@pytest.mark.tui
async def test_tui_select_node_asks_its_history():
    from gputop.tui.cluster import ClusterApp, NodeDetail

    feed = _stub()
    app = ClusterApp(feed, interval_s=60)
    async with app.run_test(size=(160, 40)) as pilot:
        await _until(pilot, lambda: app.sample is not None)
        detail = app.query_one(NodeDetail)
        await _until(pilot, lambda: detail.history is not None)
        assert detail.node.host == "10.0.0.1" and feed.history_asked[-1] == "10.0.0.1"
        await pilot.press("down")
        await _until(pilot, lambda: detail.history is not None and detail.history.host == "10.0.0.2")
        text = detail.text_for(150).plain
        assert "bravo" in text and "stale since" in text and "▁" in text  # a sparkline of its history


@pytest.mark.tui
async def test_tui_failed_refresh_is_stale_since_not_a_crash():
    from gputop.tui.cluster import ClusterApp, ClusterHeader

    feed = _stub()
    app = ClusterApp(feed, interval_s=60)
    async with app.run_test(size=(120, 30)) as pilot:
        await _until(pilot, lambda: app.sample is not None)
        ok_at = app.last_ok
        feed.fail = "cannot connect to Prometheus at http://x:9090: connection refused"
        await pilot.press("r")
        header = app.query_one(ClusterHeader)
        await _until(pilot, lambda: header.error is not None)
        text = header.text_for(300).plain
        assert f"stale since {time.strftime('%H:%M:%S', time.localtime(ok_at))}: cannot connect" in text
        assert header.has_class("-stale") and app.row_hosts()  # the last table stays
        feed.fail = None
        await pilot.press("r")
        await _until(pilot, lambda: header.error is None)
        assert not header.has_class("-stale")


@pytest.mark.tui
async def test_tui_on_a_dead_prometheus_says_so():
    import socket

    from gputop.cluster.client import Prometheus
    from gputop.cluster.fleet import ClusterFeed
    from gputop.tui.cluster import ClusterApp, ClusterHeader

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = ClusterApp(ClusterFeed(Prometheus(f"http://127.0.0.1:{port}", timeout_s=2)), interval_s=60)
    async with app.run_test(size=(120, 30)) as pilot:
        header = app.query_one(ClusterHeader)
        await _until(pilot, lambda: header.error is not None)
        assert "no data yet: cannot connect to Prometheus" in header.text_for(300).plain


@pytest.mark.e2e
def test_headless_cluster_imports_no_tui_and_httpx_has_one_home():
    import ast
    import pathlib
    import subprocess
    import sys

    code = (
        "import sys, gputop.commands.cluster, gputop.cluster.fleet, gputop.cluster.client\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {'textual', 'torch'})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    package = pathlib.Path(__file__).resolve().parents[1] / "gputop"
    users = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Import) and any(a.name.split(".")[0] == "httpx" for a in node.names)) or (
                isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "httpx"
            ):
                users.append(path.relative_to(package).as_posix())
    assert sorted(set(users)) == ["cluster/client.py"]


@pytest.mark.tui
async def test_ctrl_c_quits_the_cluster_view():
    # as README and --help say (Textual's own Ctrl+C only shows "press ctrl+q to quit")
    from gputop.tui.cluster import ClusterApp

    app = ClusterApp(_stub(), interval_s=60)
    async with app.run_test(size=(160, 40)) as pilot:
        await _until(pilot, lambda: app.sample is not None)
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert not app.is_running


@pytest.mark.tui
async def test_the_detail_panel_grows_to_its_lines_without_a_resize():
    """#26.5: the panel's height was laid out for "no node selected" (one line) and kept until
    the terminal was resized: the selected node showed only its name."""
    from gputop.tui.cluster import ClusterApp, NodeDetail

    class Slow(StubFeed):  # a real Prometheus answers after the first layout, not before it
        def refresh(self):
            time.sleep(0.5)
            return super().refresh()

    feed = _stub()
    app = ClusterApp(Slow(feed.nodes[:2]), interval_s=60)
    async with app.run_test(size=(160, 45)) as pilot:
        await _until(pilot, lambda: app.sample is not None)
        detail = app.query_one(NodeDetail)
        await _until(pilot, lambda: detail.history is not None)
        await pilot.pause()
        lines = len(detail.text_for(detail.content_region.width).plain.splitlines())
        assert lines >= 4  # name, cores, two GPUs
        assert detail.content_region.height == lines


@pytest.mark.unit
def test_two_nodes_with_one_host_name_are_told_apart_by_address():
    from gputop.cluster.nodes import labels

    nodes = (
        _node("10.0.0.1", [], hostname="gpu-node"),
        _node("10.0.0.2", [], hostname="gpu-node"),
        _node("10.0.0.3", [], hostname="other"),
        _node("10.0.0.4", []),
    )
    assert labels(nodes) == {
        "10.0.0.1": "gpu-node (10.0.0.1)",
        "10.0.0.2": "gpu-node (10.0.0.2)",
        "10.0.0.3": "other",
        "10.0.0.4": "10.0.0.4",
    }


@pytest.mark.tui
async def test_the_header_stays_one_line_at_160_columns_even_with_a_failed_refresh():
    """#26.14: it wrapped at 160 columns, more with a stale reason."""
    from gputop.tui.cluster import ClusterApp, ClusterHeader

    feed = _stub()
    app = ClusterApp(feed, interval_s=60, source="http://prometheus.example.internal:9090")
    async with app.run_test(size=(160, 40)) as pilot:
        await _until(pilot, lambda: app.sample is not None)
        header = app.query_one(ClusterHeader)
        await pilot.pause()
        assert header.size.height == 1 and "nodes 3" in header.text_for(158).plain
        feed.fail = "Prometheus at http://prometheus.example.internal:9090 did not answer within 5 s: " + "x" * 80
        await pilot.press("r")
        await _until(pilot, lambda: header.error is not None)
        await pilot.pause()
        text = header.text_for(158).plain
        assert header.size.height == 1 and "\n" not in text and len(text) <= 158
        assert "stale since" in text and "…" in text  # the reason, cut to fit


# ---------------------------------------------------------------------------- gputop serve --run's jobs


def _job_answer():
    """A job's series as Queries.jobs answers them: run "r1" on two nodes (ranks 0-1 on n1, 2-3 on
    n2), n2's serve naming rank 3 for its data loader; run "r2" on n1, no rank stepped yet."""
    out = []
    for inst, ranks, rate in (("n1:9400", (0, 1), "200"), ("n2:9400", (2, 3), "150")):
        out += [
            _series("gputop_workload_info", "1", instance=inst, run="r1", workload="torchrun"),
            _series("gputop_workload_status", "1", instance=inst, run="r1", status="running"),
            _series("gputop_workload_status", "0", instance=inst, run="r1", status="failed"),
            _series("gputop_workload_samples_per_second", rate, instance=inst, run="r1"),
        ]
        for r in ranks:
            rank = dict(instance=inst, run="r1", rank=str(r))
            out += [
                _series("gputop_workload_steps_total", str(30 + r), **rank),
                _series("gputop_workload_step_p50_seconds", "0.02" if r != 1 else "0.025", **rank),
                _series("gputop_workload_steps_per_second", "48", **rank),
                _series("gputop_workload_rank_state", "1", state="stepping", **rank),
                _series("gputop_workload_rank_state", "0", state="stalled", **rank),
                _series("gputop_workload_rank_info", "1", device=f"cuda:{r % 2}", **rank),
            ]
            if r != 2:
                out.append(_series("gputop_workload_samples_total", str(4 * (30 + r)), **rank))
    out += [
        _series("gputop_workload_data_wait_ratio", "0.9", instance="n2:9400", run="r1", rank="3"),
        _series("gputop_workload_straggler", "1", instance="n2:9400", run="r1", rank="3", reason="data loader"),
        _series("gputop_workload_status", "1", instance="n1:9400", run="r2", status="running"),
        _series("gputop_workload_steps_total", "NaN", instance="n1:9400", run="r2", rank="0"),
    ]
    return out


@pytest.mark.unit
def test_jobs_decode_by_run_across_nodes_with_their_stragglers_and_slowest_rank():
    r1, r2 = decode.jobs(_job_answer())
    assert (r1.run, r1.workload, r1.status, r1.hosts) == ("r1", "torchrun", "running", ("n1", "n2"))
    assert [(r.rank, r.host, r.steps, r.samples, r.state, r.device) for r in r1.ranks] == [
        (0, "n1", 30, 120, "stepping", "cuda:0"),
        (1, "n1", 31, 124, "stepping", "cuda:1"),
        (2, "n2", 32, None, "stepping", "cuda:0"),  # no samples series: n/a, not 0
        (3, "n2", 33, 132, "stepping", "cuda:1"),
    ]
    assert [r.data_wait_share for r in r1.ranks] == [None, None, None, 0.9]
    assert r1.samples_per_s == 350.0  # the sum over its nodes
    assert [(s.rank, s.reason, s.host) for s in r1.stragglers] == [(3, "data loader", "n2")]
    assert r1.slowest is not None and r1.slowest.rank == 1
    assert held_by(r1) == "straggler rank 3 (data loader) on n2"
    assert r2.ranks == () and r2.samples_per_s is None and held_by(r2) == "no rank has stepped yet"  # NaN: no value
    no_straggler = replace(r1, stragglers=())
    assert held_by(no_straggler) == "no straggler; slowest rank 1 (step p50 25 ms) on n1"
    doc = to_dict(ClusterSample(1.0, (), totals(()), (r1,)))
    (job,) = doc["jobs"]
    assert job["run"] == "r1" and job["stragglers"] == [{"rank": 3, "reason": "data loader", "host": "n2"}]
    assert job["slowest_rank"] == 1 and job["ranks"][2]["samples"] is None and job["hosts"] == ["n1", "n2"]
    assert to_dict(ClusterSample(1.0, (), totals(())))["jobs"] == []


@pytest.mark.unit
def test_the_jobs_query_carries_the_selector_and_every_workload_name():
    q = promql.Queries('{cluster="a"}')
    assert q.jobs.startswith("max by (__name__, instance, run, rank, reason, state, status, workload, device, hostname) (")
    assert q.jobs.endswith(', cluster="a"})')
    for name in names.WORKLOAD_METRICS:
        assert name in q.jobs


@pytest.mark.tui
async def test_the_jobs_table_shows_each_jobs_straggler_and_hides_without_jobs():
    from gputop.tui.cluster import ClusterApp, JobTable

    class WithJobs(StubFeed):
        jobs: tuple = ()

        def refresh(self):
            return replace(super().refresh(), jobs=self.jobs)

    feed = WithJobs(_stub().nodes)
    app = ClusterApp(feed, interval_s=60)
    async with app.run_test(size=(160, 40)) as pilot:
        await _until(pilot, lambda: app.sample is not None)
        table = app.query_one(JobTable)
        assert not table.display and table.row_count == 0  # a fleet without jobs: as before
        feed.jobs = decode.jobs(_job_answer())
        await pilot.press("r")
        await _until(pilot, lambda: table.row_count == 2)
        assert table.display
        cells = [str(c) for c in table.get_row("r1")]
        assert cells[:5] == ["r1", "torchrun", "running", "4", "n1, n2"] and cells[5] == "350.0"
        assert cells[6] == "straggler rank 3 (data loader) on n2"
        assert app.row_hosts() == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]  # the nodes' table as it was
