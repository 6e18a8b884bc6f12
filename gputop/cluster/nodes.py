"""Typed, frozen per-node samples of a cluster (what a refresh yields) and their JSON form.

Units are in the names, None is "not available" (never 0). A node is one host: every target whose
``instance`` label has that host part (dcgm-exporter on :9400 and node-exporter on :9100 of one
machine are one node). The flags for what wastes a cluster are computed here, in one place.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from gputop import format as fmt

IDLE_PCT = 1.0  # SMs active (or util) at or below this: the GPU does nothing
IDLE_MEMORY_BYTES = 1024**3  # ... while holding this much memory: an idle GPU someone holds
BUSY_PCT = 5.0  # a GPU counts as busy from here (the live view's "-idle" ends at 5 %)


@dataclass(frozen=True)
class ClusterGpu:
    index: int | None  # the exporter's ``gpu`` label
    name: str | None
    uuid: str | None
    sm_active_pct: float | None  # GPM (gputop) or DCGM_FI_PROF_SM_ACTIVE
    gpu_util_pct: float | None  # NVML utilization (share of time any kernel ran)
    mem_used_bytes: float | None
    mem_total_bytes: float | None
    power_w: float | None
    temp_c: float | None

    @property
    def activity_pct(self) -> float | None:
        """SMs active where the exporter gives it, else util (the view labels which)."""
        return self.sm_active_pct if self.sm_active_pct is not None else self.gpu_util_pct

    @property
    def busy(self) -> bool:
        return self.activity_pct is not None and self.activity_pct >= BUSY_PCT

    @property
    def idle_with_memory(self) -> bool:
        """Doing nothing while holding memory (a forgotten notebook, a hung job)."""
        a = self.activity_pct
        return a is not None and a <= IDLE_PCT and (self.mem_used_bytes or 0) >= IDLE_MEMORY_BYTES

    @property
    def util_trap(self) -> bool:
        """Util high while most SMs idle: kernels run, on few SMs."""
        return fmt.util_trap(self.gpu_util_pct, self.sm_active_pct)


@dataclass(frozen=True)
class ClusterNode:
    host: str  # the instance label's host part
    instances: tuple[str, ...]  # every target of this host, sorted
    hostname: str | None  # from a hostname/Hostname/nodename label, where one gives it
    source: str | None  # "gputop", "dcgm" or "amd": whose GPU series these are; None: no GPU series
    stale: bool  # a target of this host failed its last scrape (up == 0)
    stale_since: float | None  # Unix time it was last seen up (None: not stale, or not in 30 min)
    cores: int | None
    cores_busy: float | None
    gpus: tuple[ClusterGpu, ...]

    @property
    def label(self) -> str:
        return self.hostname or self.host

    @property
    def idle_gpus(self) -> int:
        return sum(1 for g in self.gpus if g.activity_pct is not None and not g.busy)

    @property
    def power_w(self) -> float | None:
        values = [g.power_w for g in self.gpus if g.power_w is not None]
        return sum(values) if values else None


@dataclass(frozen=True)
class Totals:
    nodes: int
    stale_nodes: int
    gpus: int
    busy_gpus: int
    idle_with_memory: int
    power_w: float | None
    cores: int | None
    cores_busy: float | None


@dataclass(frozen=True)
class ClusterRank:
    """One rank of a job that ``gputop serve --run`` exports (its figures as that node's serve has them)."""

    rank: int
    host: str  # the node it runs on (its serve's instance's host)
    device: str | None  # "cuda:1", "cpu"
    state: str | None  # "stepping", "waiting", "stalled", "exited"
    steps: float | None  # since the job began
    samples: float | None
    steps_per_s: float | None  # over its recent steps
    step_p50_s: float | None
    data_wait_share: float | None  # 0..1; None without a DataLoader


@dataclass(frozen=True)
class Straggler:
    """A rank that a node's serve names as holding the job back, and why."""

    rank: int
    reason: str
    host: str


@dataclass(frozen=True)
class ClusterJob:
    """A distributed job, by its ``run`` label (torchrun's run id): its ranks on every node that
    exports them, the stragglers those nodes name (each node judges the ranks it runs), and its
    slowest rank (the largest step p50)."""

    run: str
    workload: str | None
    status: str | None  # "running", "ok", "failed", ... (the worst of its nodes': failed first)
    hosts: tuple[str, ...]
    ranks: tuple[ClusterRank, ...]  # by rank
    stragglers: tuple[Straggler, ...]
    samples_per_s: float | None  # the sum over its nodes (None where one of them has none)

    @property
    def slowest(self) -> ClusterRank | None:
        timed = [r for r in self.ranks if r.step_p50_s is not None]
        return max(timed, key=lambda r: (r.step_p50_s or 0.0, -r.rank)) if timed else None


@dataclass(frozen=True)
class ClusterSample:
    ts: float  # Unix time the queries were evaluated at
    nodes: tuple[ClusterNode, ...]
    totals: Totals
    jobs: tuple[ClusterJob, ...] = ()  # gputop serve --run's jobs, by run


def _sum(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def totals(nodes: tuple[ClusterNode, ...]) -> Totals:
    """Every node counted; GPUs, power and cores of the fresh ones only. A stale node's values are
    its last answer, which a view remembers and ``--once`` never saw: one rule for both."""
    fresh = [n for n in nodes if not n.stale]
    gpus = [g for n in fresh for g in n.gpus]
    cores = _sum([n.cores for n in fresh])
    return Totals(
        nodes=len(nodes),
        stale_nodes=len(nodes) - len(fresh),
        gpus=len(gpus),
        busy_gpus=sum(1 for g in gpus if g.busy),
        idle_with_memory=sum(1 for g in gpus if g.idle_with_memory),
        power_w=_sum([g.power_w for g in gpus]),
        cores=None if cores is None else int(cores),
        cores_busy=_sum([n.cores_busy for n in fresh]),
    )


def stale_note(t: Totals) -> str:
    """The stale nodes and the totals' rule for them: "1 stale, not in the totals", "0 stale"."""
    return f"{t.stale_nodes} stale" + (", not in the totals" if t.stale_nodes else "")


def labels(nodes: Iterable[ClusterNode]) -> dict[str, str]:
    """Each node's name to show, by host: its host name, and its address beside a host name that
    two nodes share (two machines both called "localhost" or "gpu-node")."""
    nodes = list(nodes)
    shared = {name for name, k in collections.Counter(n.label for n in nodes).items() if k > 1}
    return {n.host: f"{n.label} ({n.host})" if n.label in shared and n.label != n.host else n.label for n in nodes}


def held_by(job: ClusterJob) -> str:
    """Which rank holds the job back, in words: the straggler(s) its nodes name with why, else its
    slowest rank: "straggler rank 1 (data loader) on node-a", "no straggler; slowest rank 0
    (step p50 20.2 ms)"."""
    if job.stragglers:
        return "straggler " + ", ".join(f"rank {s.rank} ({s.reason}) on {s.host}" for s in job.stragglers)
    slow = job.slowest
    if slow is None:
        return "no rank has stepped yet" if not job.ranks else "no straggler"
    return f"no straggler; slowest rank {slow.rank} (step p50 {fmt.step_time(slow.step_p50_s)}) on {slow.host}"


def job_line(job: ClusterJob) -> str:
    """One job as ``--once`` prints it (and the view's jobs table, in its columns)."""
    rate = "n/a" if job.samples_per_s is None else f"{job.samples_per_s:,.1f}"
    return (
        f"run {job.run}  {fmt.text(job.workload)}  {fmt.text(job.status)}  {len(job.ranks)} ranks on "
        f"{', '.join(job.hosts)}  {rate} samples/s  {held_by(job)}"
    )


def to_dict(sample: ClusterSample) -> dict[str, Any]:
    """The ``--once --json`` object: ``{"ts", "nodes": [...], "totals": {...}, "jobs": [...]}``."""
    nodes = []
    for n in sample.nodes:
        d = asdict(n)
        d["instances"] = list(n.instances)
        d["gpus"] = [dict(asdict(g), idle_with_memory=g.idle_with_memory, util_trap=g.util_trap) for g in n.gpus]
        nodes.append(d)
    jobs = []
    for j in sample.jobs:
        slowest = j.slowest
        d = asdict(j)
        d.update(hosts=list(j.hosts), ranks=list(d["ranks"]), stragglers=list(d["stragglers"]))
        jobs.append(dict(d, slowest_rank=None if slowest is None else slowest.rank))
    return {"ts": sample.ts, "nodes": nodes, "totals": asdict(sample.totals), "jobs": jobs}


def to_json(sample: ClusterSample) -> str:
    return json.dumps(to_dict(sample), indent=2) + "\n"
