"""benchmarks/long_trace.py for the tests: a real recording repeated with shifted timestamps."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

_PATH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "long_trace.py"
_spec = importlib.util.spec_from_file_location("long_trace", _PATH)
assert _spec is not None and _spec.loader is not None
long_trace = importlib.util.module_from_spec(_spec)
sys.modules["long_trace"] = long_trace
_spec.loader.exec_module(long_trace)
build = long_trace.build
build_torch = long_trace.build_torch
