"""Counter lines, fast: pre-built line prefixes per (pid, name), so one counter line on the hot
path of a 100 Hz recording is a few string joins and no json.dumps."""

from __future__ import annotations

from typing import Any

from gputop.trace.schema import CPU_PID, counter_key, counter_name, dumps, number_text


class Counters:
    """Pre-built line prefixes: one counter line is three string joins, no json.dumps."""

    def __init__(self) -> None:
        self._prefix: dict[tuple[int, str], tuple[str, str]] = {}
        self._rows: dict[tuple[Any, ...], list[Any]] = {}

    def parts(self, pid: int, name: str, metric: str) -> tuple[str, str]:
        parts = self._prefix.get((pid, name))
        if parts is None:
            head = f',{{"ph":"C","name":{dumps(name)},"pid":{pid},"tid":{pid},"ts":'
            tail = f',"args":{{{dumps(counter_key(metric))}:'
            parts = self._prefix[(pid, name)] = (head, tail)
        return parts

    def line(self, pid: int, name: str, metric: str, ts: str, value: str) -> str:
        head, tail = self.parts(pid, name, metric)
        return f"{head}{ts}{tail}{value}}}}}\n"

    def rows(self, pid: int, metrics_: tuple[str, ...]) -> list[tuple[str, str, str]]:
        """(metric, head, tail) of each of ``metrics_`` on ``pid``, built once."""
        rows = self._rows.get((pid, metrics_))
        if rows is None:
            rows = self._rows[(pid, metrics_)] = [(m, *self.parts(pid, m, m)) for m in metrics_]
        return rows

    def core_rows(self, metric: str, cores: int) -> list[tuple[str, str]]:
        """(head, tail) of ``metric`` on each of ``cores`` cores, built once."""
        rows = self._rows.get((CPU_PID, metric, cores))
        if rows is None:
            rows = self._rows[(CPU_PID, metric, cores)] = [self.parts(CPU_PID, counter_name(metric, core), metric) for core in range(cores)]
        return rows


def append_counters(out: list[str], rows: list[tuple[str, str, str]], values: Any, ts: str) -> None:
    """One line per row whose value (an attribute of ``values``) is a finite number."""
    for metric, head, tail in rows:
        text = number_text(getattr(values, metric))
        if text is not None:
            out.append(f"{head}{ts}{tail}{text}}}}}\n")
