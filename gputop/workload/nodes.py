"""A distributed job recorded node by node: each node's ``gputop record`` holds its own ranks, and
the traces of one run, matched by the run id every rank said in its hello (torchrun's
``TORCHELASTIC_RUN_ID``: ``--rdzv-id``), give the whole job's ranks and straggler (pure).

Traces that cannot be one job are refused with one line (``JobMismatch``): a trace without ranks
(not a distributed job), one whose ranks said no run id, traces of different runs, or one rank in
two traces (the same node given twice)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from gputop.model import Sample, WorkloadStep
from gputop.workload import causes, ranks


class JobMismatch(ValueError):
    """Traces that are not one distributed job; its message is one line for the user."""


@dataclass(frozen=True, slots=True)
class NodeRecording:
    """One node's recording of the job: its ranks and the run ids they said."""

    path: str
    host: str | None
    ranks: tuple[ranks.RankFigures, ...]
    run_ids: frozenset[str]
    duration_s: float | None = None  # the recording's
    ended: str | None = None  # how its workload (that node's launcher) ended, in words
    gpus: Mapping[int, causes.GpuWindow] = field(default_factory=dict)  # its ranks' GPUs, from its samples


def node(
    path: str, steps: Sequence[WorkloadStep], hellos: Mapping[int, Mapping[str, Any]], samples: Sequence[Sample] = (), **about: Any
) -> NodeRecording:
    """One node's ranks (``hellos``: each process's hello by pid, as ``ranks.recorded_hellos``;
    ``samples``: its recording's, for its ranks' GPUs; ``about``: the recording's host,
    duration_s, ended)."""
    said = {h.get("run_id") for h in hellos.values() if h.get("rank") is not None}
    mine = ranks.model(steps, hellos)
    return NodeRecording(
        path=path,
        ranks=tuple(mine),
        run_ids=frozenset(r for r in said if isinstance(r, str) and r),
        gpus=ranks.rank_gpus(mine, steps, hellos, samples),
        **about,
    )


def _run_id(n: NodeRecording) -> str:
    if not n.ranks:
        raise JobMismatch(f"{n.path} holds no ranks of a distributed job: report it on its own")
    if not n.run_ids:
        raise JobMismatch(f"{n.path}: its ranks said no run id (TORCHELASTIC_RUN_ID, set by torchrun), so it cannot be matched to a job")
    if len(n.run_ids) > 1:
        raise JobMismatch(f"{n.path} holds ranks of several runs ({', '.join(sorted(n.run_ids))})")
    return next(iter(n.run_ids))


def join(nodes: Sequence[NodeRecording]) -> dict[str, Any]:
    """The whole job from its nodes' recordings: ``ranks.summary_of``'s keys over every rank (each
    with the ``node`` trace it came from), the run id, the nodes and the ranks the job's world size
    names but no trace holds. JobMismatch where the traces are not one job."""
    run_id = _run_id(nodes[0])
    where: dict[int, str] = {}
    for n in nodes:
        other = _run_id(n)
        if other != run_id:
            raise JobMismatch(f"{nodes[0].path} is run {run_id!r}, {n.path} run {other!r}: traces of different runs")
        for r in n.ranks:
            if r.rank in where:
                raise JobMismatch(f"rank {r.rank} is in both {where[r.rank]} and {n.path}: one node's trace given twice?")
            where[r.rank] = n.path
    every = sorted((r for n in nodes for r in n.ranks), key=lambda r: r.rank)
    out = ranks.summary_of(every, {k: v for n in nodes for k, v in n.gpus.items()})
    for item in out["ranks"]:
        item["node"] = where[item["rank"]]
    world = max((r.world_size for r in every if r.world_size is not None), default=None)
    return {
        "run_id": run_id,
        "nodes": [
            {"path": n.path, "host": n.host, "duration_s": n.duration_s, "ended": n.ended, "ranks": [r.rank for r in n.ranks]}
            for n in nodes
        ],
        "missing_ranks": [] if world is None else [k for k in range(world) if k not in where],
        **out,
    }


def text_lines(job: Mapping[str, Any]) -> list[str]:
    """The joined job as report's text: its nodes, the per-rank table, the straggler."""
    lines = [f"Job run {job['run_id']}: {len(job['ranks'])} ranks from {len(job['nodes'])} traces (matched by run id)"]
    for n in job["nodes"]:
        took = "n/a" if n["duration_s"] is None else f"{n['duration_s']:.1f} s"
        lines.append(
            f"  {n['path']}: host {n['host'] or 'n/a'}, {took}, ranks {', '.join(map(str, n['ranks']))}; {n['ended'] or 'no end recorded'}"
        )
    if job["missing_ranks"]:
        lines.append(f"  no trace holds rank(s) {', '.join(map(str, job['missing_ranks']))} of the job's world")
    return lines + ranks.text_lines(job)
