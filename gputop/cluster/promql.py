"""The PromQL a refresh asks, built around the user's ``--selector``: a fixed handful of queries
whatever the number of nodes (never one per node), and one range query for a node's history.

A selector is label matchers, ``{job=~"gpu.*", cluster="a"}`` (the braces optional); its matchers
are added to every metric the queries read, so all of them see the same targets. Its syntax is
checked by Prometheus itself: a bad one comes back as the first query's ``bad_data`` error.
"""

from __future__ import annotations

import re

from gputop.cluster import names

# The values of the label the hosts query tags its parts with (label_replace), so one answer
# carries several aggregations side by side.
PART = "gputop_part"
CORES, BUSY, NODE_CORES, NODE_IDLE, UNAME, GPUTOP_INFO = ("cores", "busy", "node_cores", "node_idle", "uname", "gputop_info")
RATE_WINDOW = "5m"  # irate's window: the last two node-exporter scrapes must lie inside it
STALE_LOOKBACK = "15m"  # how far back "stale since" is looked for
STALE_STEP = "1s"  # its precision


class SelectorError(ValueError):
    """The selector is not label matchers in braces; the message is one line for the user."""


def matchers(selector: str | None) -> str:
    """The matchers inside a selector's braces ("" for none); a metric name is refused."""
    text = (selector or "").strip()
    if not text:
        return ""
    if text.startswith("{") and text.endswith("}"):
        return text[1:-1].strip()
    if "{" in text or "}" in text:
        raise SelectorError(f"--selector takes label matchers in braces, like '{{job=~\"gpu.*\"}}', not a metric: {selector!r}")
    return text


def _join(*parts: str) -> str:
    return ", ".join(p.rstrip(", ") for p in parts if p)


def _name_regex(metric_names: tuple[str, ...] | list[str]) -> str:
    return "|".join(metric_names)  # the names are [A-Za-z0-9_]: nothing to escape


def quote(value: str) -> str:
    """A PromQL string literal (double quotes, backslash escapes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Queries:
    """The query texts for one selector."""

    def __init__(self, selector: str | None = None) -> None:
        self.matchers = matchers(selector)
        m = self.matchers
        self.up = f"up{{{m}}}"
        # values with only the labels that place them (the answer is most of a refresh's bytes)
        self.gpus = f"max by (__name__, instance, gpu, gpu_id) ({{{_join(f'__name__=~{quote(_name_regex(list(names.GPU_METRICS)))}', m)}}})"
        # what each GPU is and on which host, once per GPU rather than once per value
        ident = ", ".join(("instance",) + names.INDEX_LABELS + names.UUID_LABELS + names.NAME_LABELS + names.HOSTNAME_LABELS[:2])
        self.gpu_names = f"group by ({ident}) ({{{_join(f'__name__=~{quote(_name_regex(names.IDENTITY_METRICS))}', m)}}})"
        # gputop serve --run's jobs, their ranks and stragglers (no series: no job)
        labels = ", ".join(("__name__", "instance", *names.WORKLOAD_LABELS))
        self.jobs = f"max by ({labels}) ({{{_join(f'__name__=~{quote(_name_regex(names.WORKLOAD_METRICS))}', m)}}})"
        core = f"{names.GPUTOP_CORE_UTIL}{{{m}}}"
        idle = names.NODE_CPU + "{" + _join('mode="idle"', m) + "}"
        parts = (
            (CORES, f"count by (instance) ({core})"),
            (BUSY, f"sum by (instance) ({core})"),
            (NODE_CORES, f"count by (instance) ({idle})"),
            (NODE_IDLE, f"sum by (instance) (irate({idle}[{RATE_WINDOW}]))"),
            (UNAME, f"max by (instance, nodename) ({names.NODE_UNAME}{{{m}}})"),
            (GPUTOP_INFO, f"max by (instance, hostname) ({names.GPUTOP_BUILD}{{{m}}})"),
        )
        self.hosts = " or ".join(f'label_replace({expr}, "{PART}", "{part}", "", "")' for part, expr in parts)

    def stale_since(self, instances: tuple[str, ...]) -> str:
        """The last moment each of these targets (now down) was up, to the second."""
        up = "up{" + _join(f"instance=~{quote(_alternatives(instances))}", self.matchers) + "}"
        return f"max_over_time(timestamp({up} == 1)[{STALE_LOOKBACK}:{STALE_STEP}])"

    def history(self, instances: tuple[str, ...]) -> str:
        """One range query: a node's GPU series (SMs or util, power, memory) over its instances."""
        return (
            "max by (__name__, instance, gpu, gpu_id) ({"
            + _join(f'__name__=~"{_name_regex(names.HISTORY_METRICS)}"', f"instance=~{quote(_alternatives(instances))}", self.matchers)
            + "})"
        )


def _alternatives(values: tuple[str, ...]) -> str:
    """A regex matching exactly these strings (PromQL regexes are anchored)."""
    return "|".join(_META.sub(r"\\\g<0>", v) for v in values)


_META = re.compile(r"[\\.+*?()|\[\]{}^$]")  # RE2's metacharacters
