"""Chrome trace event files: a streaming, crash-safe writer and a forgiving reader.

The format, and why it has this shape, is docs/trace-format.md. The package, one module a job:
``schema`` (version, pids, categories, number text), ``counters`` (fast counter lines),
``track`` (a launched workload's steps and phases, kept nested), ``writer`` (TraceWriter),
``decode`` (events back to model Samples), ``recording`` (Trace: a loaded recording, its
Samples and WorkloadSteps), ``reader`` (load, parse), ``stream`` (a file of any length read as a stream, in bounded memory) and ``index`` (a
recording's samples by index, decoded on demand). ``stream`` and ``index`` are imported by
their module path (``gputop.trace.stream``), not re-exported here.
"""

from gputop.trace.decode import ts_ns
from gputop.trace.reader import load, parse
from gputop.trace.recording import Trace, to_samples, workload_steps
from gputop.trace.schema import (
    CAT_CLOCKS,
    CAT_EMPTY,
    CAT_LOST,
    CAT_WORKLOAD,
    CPU_PID,
    GPU_PID_BASE,
    HEADER,
    PHASE_TID_BASE,
    READS_VERSIONS,
    STEPS_TID_BASE,
    TRACE_VERSION,
    TraceError,
    counter_key,
    counter_name,
    dumps_event,
    gpu_pid,
    phase_tid,
    steps_tid,
    ts_text,
)
from gputop.trace.writer import TraceWriter, header_events

__all__ = [
    "CAT_CLOCKS",
    "CAT_EMPTY",
    "CAT_LOST",
    "CAT_WORKLOAD",
    "CPU_PID",
    "GPU_PID_BASE",
    "HEADER",
    "PHASE_TID_BASE",
    "READS_VERSIONS",
    "STEPS_TID_BASE",
    "TRACE_VERSION",
    "Trace",
    "TraceError",
    "TraceWriter",
    "counter_key",
    "counter_name",
    "dumps_event",
    "gpu_pid",
    "header_events",
    "load",
    "parse",
    "phase_tid",
    "steps_tid",
    "to_samples",
    "ts_ns",
    "ts_text",
    "workload_steps",
]
