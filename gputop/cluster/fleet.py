"""The cluster feed: one refresh is a fixed handful of instant queries -> one ClusterSample; a
node's history is one range query. What the TUI draws and ``--once`` prints.

Every query of a refresh is evaluated at the same instant, and they are sent together (a small
thread pool): a refresh waits for the slowest query, not for their sum. The GPUs' names, UUIDs and
host names change rarely: they are read every ``NAMES_EVERY`` refreshes, or at once when a GPU
without a name appears. A failure is a ``ClusterError`` (one
line; ``usage`` when it is the user's ``--selector`` that Prometheus rejected); the caller decides
what a failure means (the TUI: "stale since"). The feed remembers two things between refreshes:
when each target now down was last up (asked once per outage, with one query for all the targets
that went down since the last refresh), and each node's last good sample, which a stale node
keeps showing (its GPUs' series are gone from Prometheus once a scrape fails; flagged stale).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable, Protocol

from gputop.cluster import decode, names
from gputop.cluster.client import PromError, Result, paused_gc
from gputop.cluster.nodes import ClusterNode, ClusterSample, totals
from gputop.cluster.promql import Queries

NAMES_EVERY = 12  # refreshes between two readings of the GPUs' names (a new GPU: read at once)
HISTORY_WINDOW_S = 600.0
HISTORY_POINTS = 120


class SupportsQuery(Protocol):
    """What the feed needs of a Prometheus client (``gputop.cluster.client.Prometheus``)."""

    def query(self, expr: str, at: float | None = None) -> Result: ...

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> Result: ...


class ClusterError(Exception):
    """A refresh failed; ``str()`` is one line. ``usage``: the user's input is the cause."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class GpuHistory:
    index: int | None
    name: str | None
    # gputop's field name -> (unix time, value) points, oldest first; a gap is a missing point
    series: dict[str, tuple[tuple[float, float | None], ...]]


@dataclass(frozen=True)
class NodeHistory:
    host: str
    start: float
    end: float
    step_s: float
    gpus: tuple[GpuHistory, ...]


class ClusterFeed:
    def __init__(self, prom: SupportsQuery, selector: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.prom = prom
        self.selector = selector
        self.queries = Queries(selector)  # raises promql.SelectorError for a metric name
        self.clock = clock
        self.queries_asked = 0  # every query sent, for the constant-count test and the benchmark
        self._since: dict[tuple[str, str], float | None] = {}  # (instance, job) down -> last up
        self._known: dict[str, ClusterNode] = {}  # host -> its last sample while it was fresh
        self._gpu_names: Result | None = None  # the answer to Queries.gpu_names, while it holds
        self._names_age = 0
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gputop-promql")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _ask_all(self, exprs: tuple[str, ...], at: float) -> list[Result]:
        """The answers to ``exprs``, asked at once; the first failure (in their order) is raised."""
        self.queries_asked += len(exprs)
        futures = [self._pool.submit(self.prom.query, e, at) for e in exprs]
        answers: list[Result] = []
        for f in futures:
            try:
                answers.append(f.result())
            except PromError as exc:
                for rest in futures:
                    rest.cancel()
                raise self._error(exc) from None
        return answers

    def _ask(self, expr: str, at: float) -> Result:
        self.queries_asked += 1
        try:
            return self.prom.query(expr, at)
        except PromError as exc:
            raise self._error(exc) from None

    def _error(self, exc: PromError) -> ClusterError:
        if exc.kind == "bad_data" and self.queries.matchers:
            return ClusterError(f"Prometheus rejected --selector {self.selector!r}: {exc}", usage=True)
        return ClusterError(str(exc), usage=exc.kind == "usage")

    def refresh(self) -> ClusterSample:
        """One sample of every node the selector matches."""
        at = self.clock()
        q = self.queries
        fresh_names = self._gpu_names is None or self._names_age >= NAMES_EVERY
        answers = self._ask_all((q.up, q.gpus, q.hosts, q.jobs) + ((q.gpu_names,) if fresh_names else ()), at)
        up, gpus, hosts, jobs = answers[:4]
        if fresh_names:
            self._gpu_names, self._names_age = answers[4], 0
        self._names_age += 1
        down = decode.down(up)
        self._since = {k: v for k, v in self._since.items() if k in down}
        new = tuple(sorted({i for i, job in down if (i, job) not in self._since}))
        if new:
            found = decode.last_up(self._ask(q.stale_since(new), at))
            self._since.update({k: found.get(k) for k in down if k not in self._since})
        with paused_gc():
            decoded = decode.nodes(up, gpus, self._gpu_names or [], hosts, self._since)
        if decoded.unnamed and not fresh_names:  # GPUs that appeared since the names were read
            self._gpu_names, self._names_age = self._ask(q.gpu_names, at), 1
            decoded = decode.nodes(up, gpus, self._gpu_names, hosts, self._since)
        nodes = tuple(self._carry(n) for n in decoded.nodes)
        return ClusterSample(at, nodes, totals(nodes), decode.jobs(jobs))

    def _carry(self, node: ClusterNode) -> ClusterNode:
        """A fresh node is remembered; a stale one shows what it last had (where it has nothing)."""
        if not node.stale:
            self._known[node.host] = node
            return node
        known = self._known.get(node.host)
        if known is None:
            return node
        return replace(
            node,
            hostname=node.hostname or known.hostname,
            source=node.source or known.source,
            gpus=node.gpus or known.gpus,
            cores=node.cores if node.cores is not None else known.cores,
            cores_busy=node.cores_busy if node.cores is not None else known.cores_busy,
        )

    def history(self, node: ClusterNode, window_s: float = HISTORY_WINDOW_S, points: int = HISTORY_POINTS) -> NodeHistory:
        """The node's GPUs over the last ``window_s``: SMs active (or util), power, memory."""
        end = self.clock()
        start = end - window_s
        step = max(1.0, window_s / points)
        self.queries_asked += 1
        try:
            result = self.prom.query_range(self.queries.history(node.instances), start, end, step)
        except PromError as exc:
            raise self._error(exc) from None
        names_by_index = {g.index: g.name for g in node.gpus}
        gpus: dict[tuple[str, int | None], dict[str, tuple[tuple[float, float | None], ...]]] = {}
        for s in result:
            labels = s["metric"]
            field = names.GPU_METRICS.get(labels.get("__name__", ""))
            if field is None or (node.source is not None and field.source != node.source):
                continue
            index_text = names.gpu_of(labels)
            index = int(index_text) if index_text is not None and index_text.isdigit() else None
            series = gpus.setdefault((labels.get("instance", ""), index), {})
            series[field.field] = tuple((float(t), names.to_unit(field, v)) for t, v in s.get("values", ()))
        ordered = sorted(gpus.items(), key=lambda kv: (kv[0][1] is None, kv[0][1] or 0, kv[0][0]))
        return NodeHistory(
            node.host, start, end, step, tuple(GpuHistory(index, names_by_index.get(index), series) for (_, index), series in ordered)
        )
