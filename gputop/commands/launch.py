"""``--run`` for the headless commands that launch a job beside their samples (``record``,
``serve``): the same flags, the same ``Workload`` (gputop.workload: the launcher, its hooks in
every rank), and its output echoed the same way."""

from __future__ import annotations

import argparse
from typing import Sequence, TextIO

from gputop import format as fmt
from gputop.model import WorkloadMark, WorkloadState, WorkloadStep
from gputop.workload import Workload

RUN_TARGETS = "cnn, mlp, transformer, matmul, a Python script, -m MODULE, or a Python console script on PATH such as torchrun"


def add_run_arguments(parser: argparse.ArgumentParser, until: str, kept: str) -> None:
    """``--run``, ``--quiet`` and ``--no-instrument``; ``until``: what the command does while the
    job runs ("record until it ends"), ``kept``: where its output goes besides the terminal."""
    parser.add_argument(
        "--run",
        metavar="SCRIPT|NAME",
        default=None,
        help=f"launch a workload ({RUN_TARGETS}; arguments after '--' go to it) and {until}; exit status 1 if it fails",
    )
    parser.add_argument("--quiet", action="store_true", help=f"with --run: do not echo the workload's output{kept}")
    parser.add_argument(
        "--no-instrument",
        dest="instrument",
        action="store_false",
        help="with --run: do not detect a Python script's training steps (no hooks are put in it)",
    )


def workload(args: argparse.Namespace, collect: bool = True) -> Workload | None:
    """The workload ``--run`` names (not started yet), if any; ``WorkloadError`` for one that is not."""
    if getattr(args, "run", None) is None:
        return None
    return Workload(args.run, getattr(args, "run_args", ()) or (), collect=collect, instrument=getattr(args, "instrument", True))


def shown(items: Sequence[WorkloadStep | WorkloadMark]) -> list[WorkloadMark]:
    """The output lines among drained items that are echoed: a redrawn progress line (a tqdm bar) is not."""
    return [m for m in items if isinstance(m, WorkloadMark) and m.kind == "output" and not m.args.get("progress")]


def echo(lines: Sequence[WorkloadMark], stdout: TextIO, stderr: TextIO) -> None:
    """Output lines written where the job wrote them: stdout's to stdout, stderr's to stderr."""
    for mark in lines:
        stream = stderr if mark.name == "stderr" else stdout
        stream.write(f"{mark.args.get('line', '')}\n")
    stdout.flush()
    stderr.flush()


def ended_line(prog: str, state: WorkloadState, stopped_by: str | None = None, lost: str = "") -> str:
    """How the job ended, in one line: ``gputop record: workload cnn finished (50 steps)``."""
    steps = "no steps reported" if state.step is None else f"{state.step} steps"
    line = f"{prog}: workload {state.name} {fmt.ended(state.status, stopped_by)} ({steps})"
    return line + (f": {state.error}" if state.status == "failed" and state.error else "") + lost
