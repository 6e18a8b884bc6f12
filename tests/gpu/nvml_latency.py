"""What each NVML function gputop calls costs on this driver: gputop's own sampler (the sources
``gputop`` opens, ``gputop.sampler.open_real``) runs for a while with pynvml's library wrapped so
that every C call is timed, at the open and at each tick (the process scans included).

    python3 tests/gpu/nvml_latency.py --seconds 5 --interval 0.1 --out DIR

writes DIR/nvml_latency.json and DIR/nvml_latency.md. The wrapper stands where the fake does
(``pynvml.nvmlLib``), so the same code times the fake's Python here and the driver's C there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any


class _Timed:
    """One C function, timed into its library's log of the current phase; attributes pynvml sets
    (``restype``) reach the function itself."""

    def __init__(self, fn: Any, name: str, lib: TimedLibrary) -> None:
        object.__setattr__(self, "_fn", fn)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_lib", lib)

    def __call__(self, *args: Any) -> Any:
        t0 = time.perf_counter_ns()
        result = self._fn(*args)
        elapsed = time.perf_counter_ns() - t0
        self._lib.calls[self._lib.phase][self._name].append((elapsed, result if isinstance(result, int) else 0))
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fn, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._fn, name, value)


class TimedLibrary:
    """Stands in for the loaded library; every symbol pynvml asks for comes back timed. The
    calls go to ``phase``'s log: "open" (the close's too) or "tick"."""

    def __init__(self, lib: Any) -> None:
        self._lib = lib
        self.phase = "open"
        self.calls: dict[str, dict[str, list[tuple[int, int]]]] = {"open": defaultdict(list), "tick": defaultdict(list)}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Timed(getattr(self._lib, name), name, self)


def measure(seconds: float, interval: float, process_interval: float = 1.0) -> dict[str, Any]:
    """Open gputop's sampler over the timed library, tick it every ``interval`` for ``seconds``,
    close it; pynvml's library is put back as it was, whatever happens."""
    import pynvml

    from gputop.sampler import open_real

    if pynvml.nvmlLib is None:
        pynvml._LoadNvmlLibrary()  # the real library, loaded as nvmlInit would load it
    real = pynvml.nvmlLib
    timed = TimedLibrary(real)
    pynvml._nvmlGetFunctionPointer_cache.clear()
    pynvml.nvmlLib = timed
    ticks, gpus = 0, 0
    try:
        t0 = time.perf_counter()
        sampler = open_real(process_interval_s=process_interval)
        open_s = time.perf_counter() - t0
        timed.phase = "tick"
        start = time.monotonic()
        try:
            while time.monotonic() - start < seconds:
                gpus = len(sampler.sample().gpus)
                ticks += 1
                time.sleep(max(0.0, start + ticks * interval - time.monotonic()))
        finally:
            timed.phase = "open"  # the close's calls (nvmlShutdown) count with the set-up's
            sampler.close()
    finally:
        pynvml.nvmlLib = real
        pynvml._nvmlGetFunctionPointer_cache.clear()
    return {
        "seconds": seconds,
        "interval_s": interval,
        "ticks": ticks,
        "gpus": gpus,
        "open_s": open_s,
        "symbols": [row for phase in ("open", "tick") for row in _rows(phase, timed.calls[phase], ticks)],
    }


def _rows(phase: str, calls: dict[str, list[tuple[int, int]]], ticks: int) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(calls):
        ns = [t for t, _ in calls[name]]
        returns: dict[str, int] = defaultdict(int)
        for _, rc in calls[name]:
            returns[str(rc)] += 1
        rows.append(
            {
                "phase": phase,
                "symbol": name,
                "calls": len(ns),
                "median_us": statistics.median(ns) / 1e3,
                "max_us": max(ns) / 1e3,
                "total_ms": sum(ns) / 1e6,
                "per_tick_us": sum(ns) / 1e3 / ticks if phase == "tick" and ticks else None,
                "returns": dict(returns),
            }
        )
    return rows


def table(result: dict[str, Any]) -> str:
    """The measurement as Markdown: one row a symbol and phase, the per-tick total under it."""
    lines = [
        f"{result['ticks']} ticks every {result['interval_s']:g} s over {result['gpus']} GPU(s); "
        f"sources opened in {result['open_s'] * 1e3:.1f} ms",
        "",
        "| phase | symbol | calls | median us | max us | per tick us | returns (code: calls) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in result["symbols"]:
        per_tick = "-" if r["per_tick_us"] is None else f"{r['per_tick_us']:.1f}"
        returns = ", ".join(f"{k}: {v}" for k, v in sorted(r["returns"].items()))
        lines.append(f"| {r['phase']} | {r['symbol']} | {r['calls']} | {r['median_us']:.1f} | {r['max_us']:.1f} | {per_tick} | {returns} |")
    tick_us = sum(r["per_tick_us"] or 0 for r in result["symbols"])
    lines += ["", f"NVML time per tick, all symbols: {tick_us:.1f} us"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--process-interval", type=float, default=1.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = measure(args.seconds, args.interval, args.process_interval)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nvml_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "nvml_latency.md").write_text(table(result))
    print(table(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
