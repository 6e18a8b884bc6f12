"""Prometheus answers (the ``promql.Queries`` of one refresh) turned into ``ClusterNode``s.

Every series is assigned to its node by the host part of its ``instance`` label; a GPU is its
``(instance, gpu)`` pair: its values come from one answer (converted by ``names``, the one place
for names and units) and its name, UUID and host name from another. A node with both gputop's and DCGM's
GPU series shows gputop's (they describe the same devices; gputop's carry GPM's SM activity), then
DCGM's, then AMD device-metrics-exporter's.
DCGM's memory total, where it exports no ``FB_TOTAL``, is used + free + reserved.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

from gputop.cluster import names, promql
from gputop.cluster.nodes import ClusterGpu, ClusterJob, ClusterNode, ClusterRank, Straggler

Result = list[dict[str, Any]]

_GPU_FIELDS = ("sm_active_pct", "gpu_util_pct", "mem_used_bytes", "mem_total_bytes", "power_w", "temp_c")


def _value(series: Mapping[str, Any]) -> str:
    return str(series["value"][1])


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


class _Gpu:
    """The fields of one GPU as its series arrive."""

    def __init__(self, index: int | None) -> None:
        self.index = index
        self.name: str | None = None
        self.uuid: str | None = None
        self.values: dict[str, float | None] = {}

    def build(self) -> ClusterGpu:
        v = self.values
        total = v.get("mem_total_bytes")
        used, free = v.get("mem_used_bytes"), v.get("mem_free_bytes")
        if total is None and used is not None and free is not None:
            total = used + free + (v.get("mem_reserved_bytes") or 0.0)
        return ClusterGpu(
            self.index,
            self.name,
            self.uuid,
            v.get("sm_active_pct"),
            v.get("gpu_util_pct"),
            v.get("mem_used_bytes"),
            total,
            v.get("power_w"),
            v.get("temp_c"),
        )


class _Node:
    def __init__(self, host: str) -> None:
        self.host = host
        self.instances: set[str] = set()
        self.hostnames: dict[str, str] = {}  # source of the name -> the name
        self.down_since: list[float | None] = []
        self.gpus: dict[str, dict[tuple[str, str | None], _Gpu]] = {names.GPUTOP: {}, names.DCGM: {}, names.AMD: {}}
        self.parts: dict[str, float | None] = {}


def down(up: Result) -> list[tuple[str, str]]:
    """(instance, job) of every target whose last scrape failed."""
    return [(s["metric"].get("instance", ""), s["metric"].get("job", "")) for s in up if _number(_value(s)) == 0]


def last_up(stale_since: Result) -> dict[tuple[str, str], float | None]:
    """The answer to ``Queries.stale_since``: (instance, job) -> when it was last up."""
    return {(s["metric"].get("instance", ""), s["metric"].get("job", "")): _number(_value(s)) for s in stale_since}


class Decoded(NamedTuple):
    nodes: tuple[ClusterNode, ...]
    unnamed: int  # GPUs with values but no entry in ``gpu_names`` (new since it was asked)


def nodes(
    up: Result, gpus: Result, gpu_names: Result, hosts: Result, since: Mapping[tuple[str, str], float | None] | None = None
) -> Decoded:
    """One ClusterNode per host, sorted by host. ``since``: when each target now down was last
    up (see ``last_up``); a target missing there is stale since an unknown time."""
    table = _Table()
    _mark_down(table, up, since or {})
    known = _gpu_values(table, gpus)
    named = _name_gpus(table, known, gpu_names)
    _host_parts(table, hosts)
    return Decoded(tuple(_build(table.nodes[h]) for h in sorted(table.nodes)), len(known) - named)


class _Table:
    """The nodes by host, each found by any of its instances."""

    def __init__(self) -> None:
        self.nodes: dict[str, _Node] = {}
        self.by_instance: dict[str, _Node] = {}

    def node(self, labels: Mapping[str, str]) -> _Node | None:
        """The node of a series' ``instance`` label (added at its first series); None without one."""
        instance = labels.get("instance")
        if not instance:
            return None
        n = self.by_instance.get(instance)
        if n is None:
            host = names.host_of(instance)
            n = self.nodes.get(host)
            if n is None:
                n = self.nodes[host] = _Node(host)
            n.instances.add(instance)
            self.by_instance[instance] = n
        return n


def _mark_down(table: _Table, up: Result, since: Mapping[tuple[str, str], float | None]) -> None:
    """Every target's node; a target whose last scrape failed marks it stale (since when)."""
    for s in up:
        n = table.node(s["metric"])
        if n is not None and _number(_value(s)) == 0:
            n.down_since.append(since.get((s["metric"].get("instance", ""), s["metric"].get("job", ""))))


def _gpu_values(table: _Table, gpus: Result) -> dict[tuple[str, str | None], _Gpu]:
    """Each GPU's values, by (instance, gpu), put on its node under its source's name."""
    known: dict[tuple[str, str | None], _Gpu] = {}
    field_of, known_gpu, to_unit, node, gpu_of = names.GPU_METRICS.get, known.get, names.to_unit, table.node, names.gpu_of
    for s in gpus:  # most of a refresh's series: the loop does as little as it can per series
        labels = s["metric"]
        field = field_of(labels.get("__name__", ""))
        if field is None:
            continue
        key = (labels.get("instance", ""), gpu_of(labels))
        gpu = known_gpu(key)
        if gpu is None:
            n = node(labels)
            if n is None:
                continue
            index_text = key[1]
            gpu = known[key] = n.gpus[field.source].setdefault(
                key, _Gpu(int(index_text) if index_text is not None and index_text.isdigit() else None)
            )
        gpu.values[field.field] = to_unit(field, s["value"][1])
    return known


def _name_gpus(table: _Table, known: Mapping[tuple[str, str | None], _Gpu], gpu_names: Result) -> int:
    """Names and UUIDs of the GPUs that have values (and their nodes' host names); how many."""
    named = 0
    for s in gpu_names:
        labels = s["metric"]
        gpu = known.get((labels.get("instance", ""), names.gpu_of(labels)))
        n = table.node(labels)
        if gpu is None or n is None:
            continue
        named += 1
        gpu.uuid = names.label(labels, names.UUID_LABELS)
        gpu.name = names.label(labels, names.NAME_LABELS)
        hostname = names.label(labels, names.HOSTNAME_LABELS)
        if hostname:
            n.hostnames.setdefault(_source_of(labels), hostname)
    return named


def _source_of(labels: Mapping[str, str]) -> str:
    """Which exporter an identity series came from, by its labels."""
    if labels.get("gpu") is None and labels.get("gpu_id") is not None:
        return names.AMD
    return names.GPUTOP if labels.get("hostname") else names.DCGM


def _host_parts(table: _Table, hosts: Result) -> None:
    """The hosts' answers: their names (uname, gputop's info) and CPU figures."""
    for s in hosts:
        labels = s["metric"]
        n = table.node(labels)
        if n is None:
            continue
        part = labels.get(promql.PART, "")
        if part == promql.UNAME and labels.get("nodename"):
            n.hostnames["node"] = labels["nodename"]
        elif part == promql.GPUTOP_INFO and labels.get("hostname"):
            n.hostnames[names.GPUTOP] = labels["hostname"]
        else:
            n.parts[part] = _number(_value(s))


def _build(n: _Node) -> ClusterNode:
    source = next((s for s in (names.GPUTOP, names.DCGM, names.AMD) if n.gpus[s]), None)
    gpus = (
        tuple(sorted((g.build() for g in n.gpus[source].values()), key=lambda g: (g.index is None, g.index or 0, g.uuid or "")))
        if source
        else ()
    )
    p = n.parts
    # gputop's own per-core figures where it runs; else node-exporter's
    if p.get(promql.CORES) is not None:
        cores, busy = p[promql.CORES], p.get(promql.BUSY)
    elif p.get(promql.NODE_CORES) is not None:
        cores, idle = p[promql.NODE_CORES], p.get(promql.NODE_IDLE)
        busy = None if idle is None or cores is None else max(0.0, cores - idle)
    else:
        cores, busy = None, None
    hostname = next((n.hostnames[k] for k in (names.GPUTOP, names.DCGM, names.AMD, "node") if k in n.hostnames), None)
    stale = bool(n.down_since)
    known = [t for t in n.down_since if t is not None]
    return ClusterNode(
        host=n.host,
        instances=tuple(sorted(n.instances)),
        hostname=hostname,
        source=source,
        stale=stale,
        stale_since=min(known) if known else None,
        cores=None if cores is None else int(cores),
        cores_busy=busy,
        gpus=gpus,
    )


# ---- gputop serve --run's jobs ---------------------------------------------------------------

_STATUS_ORDER = ("failed", "stopping", "running", "stopped", "ok")  # a job's status: its worst node's


class _Job:
    def __init__(self, run: str) -> None:
        self.run = run
        self.workload: str | None = None
        self.statuses: set[str] = set()
        self.hosts: set[str] = set()
        self.ranks: dict[tuple[str, int], dict[str, Any]] = {}  # (instance, rank) -> its fields
        self.stragglers: list[Straggler] = []
        self.rates: dict[str, float] = {}  # instance -> its ranks' samples/s

    def build(self) -> ClusterJob:
        ranks = tuple(
            ClusterRank(
                rank=rank,
                host=names.host_of(instance),
                device=f.get("device"),
                state=f.get("state"),
                steps=f.get("steps"),
                samples=f.get("samples"),
                steps_per_s=f.get("steps_per_s"),
                step_p50_s=f.get("step_p50_s"),
                data_wait_share=f.get("data_wait_share"),
            )
            for (instance, rank), f in sorted(self.ranks.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        )
        instances = {i for i, _ in self.ranks} | set(self.rates)
        rate = sum(self.rates.values()) if self.rates and set(self.rates) >= instances else None
        status = next((s for s in _STATUS_ORDER if s in self.statuses), None)
        stragglers = tuple(sorted(self.stragglers, key=lambda s: (s.rank, s.host)))
        return ClusterJob(self.run, self.workload, status, tuple(sorted(self.hosts)), ranks, stragglers, rate)


def jobs(answer: Result) -> tuple[ClusterJob, ...]:
    """The answer to ``Queries.jobs`` as one ClusterJob per ``run`` label, by run; a job on
    several nodes (one serve each) is one job with every node's ranks."""
    found: dict[str, _Job] = {}
    for s in answer:
        labels = s["metric"]
        run, instance = labels.get("run"), labels.get("instance")
        value = names.to_unit(_RAW, _value(s))
        if not run or not instance or value is None:
            continue
        job = found.setdefault(run, _Job(run))
        job.hosts.add(names.host_of(instance))
        _job_series(job, labels.get("__name__", ""), labels, instance, value)
    return tuple(found[r].build() for r in sorted(found))


_RAW = names.Field(names.GPUTOP, "", 1.0)  # a workload series' value: already in its unit


def _job_series(job: _Job, name: str, labels: dict[str, str], instance: str, value: float) -> None:
    """One series of a job into its fields (an enumeration's 0s, and a rank label that is no number, left out)."""
    if name == names.WORKLOAD_INFO:
        job.workload = labels.get("workload") or job.workload
    elif name == names.WORKLOAD_STATUS:
        if value == 1 and labels.get("status"):
            job.statuses.add(labels["status"])
    elif name == names.WORKLOAD_SAMPLES_PER_S:
        job.rates[instance] = value
    rank_text = labels.get("rank", "")
    if not rank_text.isdigit():
        return
    rank = int(rank_text)
    if name == names.WORKLOAD_STRAGGLER:
        job.stragglers.append(Straggler(rank, labels.get("reason", ""), names.host_of(instance)))
        return
    fields = job.ranks.setdefault((instance, rank), {})
    if name == names.WORKLOAD_RANK_STATE:
        if value == 1:
            fields["state"] = labels.get("state")
    elif name == names.WORKLOAD_RANK_INFO:
        fields["device"] = labels.get("device") or None
    elif name in names.WORKLOAD_RANK_METRICS:
        fields[names.WORKLOAD_RANK_METRICS[name]] = value
