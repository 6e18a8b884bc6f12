"""The GPU check's reference rules: what gputop shows against the driver's own tool. nvidia-smi's
output read into one reference, the row-by-row comparison with its tolerances, and where the NVML
fake differs in kind from the real driver. Plain functions, standard library only: the tests
marked ``gpu`` (tests/gpu/test_gpu_nvml.py) call them on a real GPU's outputs, and
tests/gpu/test_gpu_rules.py checks them here against crafted inputs.

A reference maps a field name to a ``Ref``: the driver's value and where it was read. A value
the reference does not have is ``Ref(None, source, missing=why)``: the row says "unchecked", it
is neither a match nor a mismatch. A value gputop does not show at all is ``NOT_SHOWN``.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Callable, Mapping

MiB = 1 << 20
NOT_SHOWN = "not shown by gputop"

# nvidia-smi --query-gpu fields, in the order asked. Some do not exist in every driver: the
# caller drops the one nvidia-smi calls invalid (``unknown_field``) and asks again.
SMI_FIELDS = (
    "index",
    "name",
    "uuid",
    "pci.bus_id",
    "driver_version",
    "memory.total",
    "memory.reserved",
    "memory.used",
    "memory.free",
    "power.draw",
    "power.draw.average",
    "power.draw.instant",
    "enforced.power.limit",
    "power.limit",
    "clocks.sm",
    "clocks.mem",
    "clocks.max.sm",
    "clocks.max.mem",
    "temperature.gpu",
    "pstate",
    "fan.speed",
    "utilization.gpu",
    "utilization.memory",
    "clocks_event_reasons.active",
    "mig.mode.current",
    "pcie.link.gen.current",
    "pcie.link.gen.max",
    "pcie.link.width.current",
    "pcie.link.width.max",
)


@dataclass(frozen=True)
class Ref:
    value: Any
    source: str
    missing: str | None = None  # why the reference has no value (the row is then unchecked)


@dataclass(frozen=True)
class Rule:
    """How close two values must be: exact, or within ``rel`` (of the driver's) or ``abs``."""

    rel: float | None = None
    abs: float | None = None
    kind: str = "number"  # "number", "text" (case- and space-insensitive), "reasons", "processes"
    text: str | None = None  # the rule in words, where the numbers alone read badly (bytes)

    def describe(self) -> str:
        if self.text:
            return self.text
        if self.kind == "text":
            return "same text"
        if self.kind == "reasons":
            return "a reason per bit of the mask"
        if self.kind == "processes":
            return "same pids, memory within 5 % or 16 MiB"
        parts = ([f"{self.rel * 100:g} %"] if self.rel else []) + ([f"{self.abs:g}"] if self.abs else [])
        return "within " + " or ".join(parts) if parts else "equal"


EXACT, TEXT = Rule(), Rule(kind="text")


@dataclass(frozen=True)
class Row:
    field: str
    gputop: str
    driver: str
    source: str
    rule: str
    verdict: str  # "match", "MISMATCH", "unchecked: ...", "both n/a", NOT_SHOWN

    @property
    def mismatch(self) -> bool:
        return self.verdict.startswith("MISMATCH")

    def as_dict(self) -> dict[str, str]:
        return {
            "field": self.field,
            "gputop": self.gputop,
            "driver": self.driver,
            "source": self.source,
            "rule": self.rule,
            "verdict": self.verdict,
        }


def show(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict) and all(isinstance(k, int) for k in value):  # processes: pid -> bytes
        return ", ".join(f"{pid}: {_mib(mem)}" for pid, mem in sorted(value.items())) or "none"
    if isinstance(value, (tuple, list)):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def _mib(mem: int | None) -> str:
    return "n/a" if mem is None else f"{mem / MiB:.0f} MiB"


def compare(field: str, ours: Any, ref: Ref, rule: Rule) -> Row:
    """One row: gputop's value against the reference's, under ``rule``."""

    def row(verdict: str) -> Row:
        return Row(field, show(ours) if ours is not NOT_SHOWN else "-", show(ref.value), ref.source, rule.describe(), verdict)

    if ours is NOT_SHOWN:
        return row(NOT_SHOWN)
    if ref.missing is not None:
        return row(f"unchecked: {ref.missing}")
    if ours is None and ref.value is None:
        return row("both n/a")
    if ours is None or ref.value is None:
        return row("MISMATCH: " + ("gputop n/a" if ours is None else "driver n/a"))
    return row("match" if _close(ours, ref.value, rule) else "MISMATCH")


def _close(ours: Any, theirs: Any, rule: Rule) -> bool:
    if rule.kind == "text":
        return " ".join(str(ours).lower().split()) == " ".join(str(theirs).lower().split())
    if rule.kind == "reasons":  # gputop's words (one per bit, unknown bits in hex) against the mask
        return len(ours) == bin(int(theirs)).count("1")
    if rule.kind == "processes":
        if set(ours) != set(theirs):
            return False
        return all(_near(ours[p], theirs[p], 0.05, 16 * MiB) for p in ours)
    return _near(ours, theirs, rule.rel, rule.abs)


def _near(a: Any, b: Any, rel: float | None, abs_: float | None) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    slack = max(rel * abs(float(b)) if rel else 0.0, abs_ or 0.0)
    return abs(float(a) - float(b)) <= slack


# --------------------------------------------------------------------------------- the table

GiB = 1 << 30
# (label, gputop's value from (gpu, info), reference key, rule)
FIELDS: tuple[tuple[str, Callable[[dict, dict], Any], str, Rule], ...] = (
    ("name", lambda g, i: i.get("name"), "name", TEXT),
    ("uuid", lambda g, i: i.get("uuid"), "uuid", TEXT),
    ("PCI bus id", lambda g, i: i.get("pci_bus_id"), "pci_bus_id", TEXT),
    ("driver version", lambda g, i: i.get("driver_version"), "driver_version", TEXT),
    ("CUDA version (driver)", lambda g, i: i.get("cuda_version"), "cuda_version", TEXT),
    ("architecture", lambda g, i: i.get("architecture"), "architecture", TEXT),
    ("SM count", lambda g, i: i.get("sm_count"), "sm_count", EXACT),
    ("memory total (bytes)", lambda g, i: g.get("mem_total_bytes"), "mem_total_bytes", Rule(abs=MiB, text="within 1 MiB")),
    (
        "memory used (bytes)",
        lambda g, i: g.get("mem_used_bytes"),
        "mem_used_bytes",
        Rule(rel=0.05, abs=64 * MiB, text="within 5 % or 64 MiB"),
    ),
    ("power (W)", lambda g, i: g.get("power_w"), "power_w", Rule(rel=0.05)),
    ("power limit (W)", lambda g, i: g.get("power_limit_w"), "power_limit_w", Rule(rel=0.05)),
    ("SM clock (MHz)", lambda g, i: g.get("sm_clock_mhz"), "sm_clock_mhz", Rule(rel=0.10)),
    ("memory clock (MHz)", lambda g, i: g.get("mem_clock_mhz"), "mem_clock_mhz", Rule(rel=0.05)),
    ("max memory clock (MHz)", lambda g, i: i.get("max_mem_clock_mhz"), "max_mem_clock_mhz", Rule(rel=0.01)),
    ("temperature (C)", lambda g, i: g.get("temp_c"), "temp_c", Rule(abs=2.0)),
    ("pstate", lambda g, i: g.get("pstate"), "pstate", EXACT),
    ("fan (%)", lambda g, i: g.get("fan_pct"), "fan_pct", Rule(abs=2.0)),
    ("GPU util (%)", lambda g, i: g.get("gpu_util_pct"), "gpu_util_pct", Rule(abs=10.0)),
    ("memory busy (%)", lambda g, i: g.get("mem_busy_pct"), "mem_busy_pct", Rule(abs=10.0)),
    ("clocks held by", lambda g, i: g.get("clock_event_reasons"), "clock_event_reasons", Rule(kind="reasons")),
    ("MIG enabled", lambda g, i: i.get("mig_enabled"), "mig_enabled", EXACT),
    ("PCIe generation (current)", lambda g, i: i.get("pcie_link_gen"), "pcie_gen", EXACT),
    ("PCIe width (current)", lambda g, i: i.get("pcie_link_width"), "pcie_width", EXACT),
    ("PCIe generation (max)", lambda g, i: i.get("pcie_link_gen_max"), "pcie_gen_max", EXACT),
    ("PCIe width (max)", lambda g, i: i.get("pcie_link_width_max"), "pcie_width_max", EXACT),
    ("processes (pid: memory)", lambda g, i: _processes(g), "processes", Rule(kind="processes")),
)


def _processes(gpu: dict) -> dict[int, int | None] | None:
    procs = gpu.get("processes")
    if procs is None:
        return None
    return {p["pid"]: p.get("gpu_mem_bytes") for p in procs}


def cross_check(gpu: Mapping[str, Any], reference: Mapping[str, Ref]) -> list[Row]:
    """Every row of FIELDS: ``gpu`` is one entry of ``gputop snapshot --json``'s ``gpus``."""
    info = gpu.get("info") or {}
    missing = Ref(None, "-", missing="the reference has no such value")
    return [compare(label, get(dict(gpu), dict(info)), reference.get(key, missing), rule) for label, get, key, rule in FIELDS]


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table; a mismatch is marked in bold."""
    head = "| field | gputop | driver | read from | rule | verdict |\n|---|---|---|---|---|---|\n"
    body = "".join(
        f"| {r.field} | {_cell(r.gputop)} | {_cell(r.driver)} | {r.source} | {r.rule} | "
        f"{'**' + r.verdict + '**' if r.mismatch else r.verdict} |\n"
        for r in rows
    )
    return head + body


def _cell(text: str) -> str:
    text = text.replace("|", "/")
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------------------ nvidia-smi

_NA = re.compile(
    r"^\[?(n/a|not supported|unknown error|insufficient permissions|requested functionality has been deprecated)\]?$",
    re.IGNORECASE,
)


def _number(text: str | None) -> float | None:
    """``"143771 MiB"`` -> 143771.0; ``"[N/A]"``, ``""`` or ``None`` -> None."""
    if text is None:
        return None
    text = text.strip()
    if not text or _NA.match(text):
        return None
    m = re.match(r"^[-+]?\d+(\.\d+)?", text)
    return float(m.group(0)) if m else None


def unknown_field(output: str, fields: tuple[str, ...]) -> str | None:
    """The field of ``fields`` that ``nvidia-smi --query-gpu`` refused as unknown to this driver
    (its words: ``Field "power.draw.average" is not a valid field to query.``), or None."""
    bad = re.search(r'Field "([^"]+)" is not a valid field', output)
    return bad.group(1) if bad and bad.group(1) in fields else None


def parse_query_csv(text: str) -> dict[str, str]:
    """The first GPU's row of ``nvidia-smi --query-gpu=... --format=csv``: field -> raw text
    (the header's units, ``memory.total [MiB]``, are dropped from the keys)."""
    rows = list(csv.reader(io.StringIO(text), skipinitialspace=True))
    if len(rows) < 2:
        raise ValueError("nvidia-smi printed no GPU row")
    keys = [re.sub(r"\s*\[.*\]$", "", k).strip() for k in rows[0]]
    return dict(zip(keys, (v.strip() for v in rows[1])))


def _xml_text(root: ET.Element | None, path: str) -> str | None:
    if root is None:
        return None
    node = root.find(path)
    return None if node is None or node.text is None else node.text.strip()


def smi_reference(query: Mapping[str, str], xml_text: str | None) -> dict[str, Ref]:
    """The reference from nvidia-smi's CSV row (first choice) and ``-q -x`` (the rest)."""
    gpu = None
    if xml_text:
        root = ET.fromstring(xml_text)
        gpu = root.find("gpu")
        cuda_xml = _xml_text(root, "cuda_version")
    else:
        cuda_xml = None
    csv_src, xml_src = "nvidia-smi --query-gpu", "nvidia-smi -q -x"

    def q(key: str) -> str | None:
        value = query.get(key)
        return None if value is None or _NA.match(value.strip() or "n/a") else value.strip()

    def num(key: str, xml_path: str | None = None, scale: float = 1.0) -> Ref:
        if key in query:
            value = _number(query[key])
            return Ref(None if value is None else value * scale, csv_src)
        if xml_path and gpu is not None:
            value = _number(_xml_text(gpu, xml_path))
            return Ref(None if value is None else value * scale, xml_src)
        return Ref(None, csv_src, missing=f"this driver's nvidia-smi has no {key}")

    def text(key: str, xml_path: str | None = None) -> Ref:
        if key in query:
            return Ref(q(key), csv_src)
        if xml_path and gpu is not None:
            return Ref(_xml_text(gpu, xml_path), xml_src)
        return Ref(None, csv_src, missing=f"this driver's nvidia-smi has no {key}")

    power = num("power.draw", "gpu_power_readings/power_draw")
    if power.value is None and "power.draw.average" in query:
        power = num("power.draw.average")
    limit = num("enforced.power.limit", "gpu_power_readings/enforced_power_limit")
    pstate = q("pstate")
    reasons = q("clocks_event_reasons.active")
    mig = q("mig.mode.current")
    ref = {
        "name": text("name", "product_name"),
        "uuid": text("uuid", "uuid"),
        "pci_bus_id": text("pci.bus_id", "pci/pci_bus_id"),
        "driver_version": text("driver_version"),
        "cuda_version": Ref(cuda_xml, xml_src) if xml_text else Ref(None, xml_src, missing="no -q -x output"),
        "architecture": Ref(_xml_text(gpu, "product_architecture"), xml_src)
        if gpu is not None
        else Ref(None, xml_src, missing="no -q -x output"),
        "mem_total_bytes": num("memory.total", "fb_memory_usage/total", MiB),
        "mem_used_bytes": num("memory.used", "fb_memory_usage/used", MiB),
        "power_w": power,
        "power_limit_w": limit,
        "sm_clock_mhz": num("clocks.sm", "clocks/sm_clock"),
        "mem_clock_mhz": num("clocks.mem", "clocks/mem_clock"),
        "max_mem_clock_mhz": num("clocks.max.mem", "max_clocks/mem_clock"),
        "temp_c": num("temperature.gpu", "temperature/gpu_temp"),
        "pstate": Ref(int(pstate[1:]) if pstate and re.fullmatch(r"P\d+", pstate) else None, csv_src),
        "fan_pct": num("fan.speed", "fan_speed"),
        "gpu_util_pct": num("utilization.gpu", "utilization/gpu_util"),
        "mem_busy_pct": num("utilization.memory", "utilization/memory_util"),
        "clock_event_reasons": (
            Ref(int(reasons, 16), csv_src) if reasons else Ref(None, csv_src, missing="no clocks_event_reasons.active")
        ),
        "mig_enabled": Ref(None if mig is None else mig.lower() == "enabled", csv_src),
        "pcie_gen": num("pcie.link.gen.current", "pci/pci_gpu_link_info/pcie_gen/current_link_gen"),
        "pcie_width": num("pcie.link.width.current", "pci/pci_gpu_link_info/link_widths/current_link_width"),
        "pcie_gen_max": num("pcie.link.gen.max", "pci/pci_gpu_link_info/pcie_gen/max_link_gen"),
        "pcie_width_max": num("pcie.link.width.max", "pci/pci_gpu_link_info/link_widths/max_link_width"),
        "processes": Ref(xml_processes(gpu), xml_src) if gpu is not None else Ref(None, xml_src, missing="no -q -x output"),
    }
    return ref


def xml_processes(gpu: ET.Element | None) -> dict[int, int | None]:
    """pid -> used memory in bytes, from ``-q -x``'s ``processes`` (an empty dict: none)."""
    out: dict[int, int | None] = {}
    if gpu is None:
        return out
    for proc in gpu.findall("processes/process_info"):
        pid = _number(_xml_text(proc, "pid"))
        if pid is None:
            continue
        mem = _number(_xml_text(proc, "used_memory"))
        out[int(pid)] = None if mem is None else int(mem * MiB)
    return out


# ---------------------------------------------------------------------- fake against real

HOST_FACTS = ("cpu_affinity", "numa_node")  # GpuInfo keys that follow the host board, not the GPU


def fake_differences(real: Mapping[str, Any], fake: Mapping[str, Any]) -> list[dict[str, str]]:
    """Where ``gputop snapshot --json`` over the fake differs in kind from the same on the real
    GPU: a metric one gives and the other does not, a static fact of the device (for a profile
    of this GPU), a different type. Values that only move with the load are not listed."""
    out = []
    rg, fg = (real.get("gpus") or [{}])[0], (fake.get("gpus") or [{}])[0]
    ri, fi = rg.get("info") or {}, fg.get("info") or {}
    for key in sorted(set(rg) | set(fg)):
        if key in ("info", "processes"):
            continue
        a, b = rg.get(key), fg.get(key)
        if (a is None) != (b is None):
            out.append(
                {
                    "field": key,
                    "fake": show(b),
                    "real": show(a),
                    "note": "the fake gives a value the GPU does not" if a is None else "the GPU gives a value the fake does not",
                }
            )
        elif a is not None and type(a) is not type(b) and not {type(a), type(b)} <= {int, float}:
            out.append({"field": key, "fake": show(b), "real": show(a), "note": "different type"})
    for key in sorted(set(ri) | set(fi)):
        a, b = ri.get(key), fi.get(key)
        if key in ("index", "uuid", "pci_bus_id"):
            continue
        if a != b:
            out.append(
                {
                    "field": f"info.{key}",
                    "fake": show(b),
                    "real": show(a),
                    "note": "host fact (the machine's CPUs, not the GPU model's)"
                    if key in HOST_FACTS
                    else "device fact (a profile of this GPU would carry the real value)",
                }
            )
    rp, fp = rg.get("processes"), fg.get("processes")
    if (rp is None) != (fp is None):
        out.append({"field": "processes", "fake": show(fp), "real": show(rp), "note": "process list readable on one side only"})
    elif rp and fp:
        for key in sorted(set(rp[0]) | set(fp[0])):
            if (rp[0].get(key) is None) != (fp[0].get(key) is None):
                out.append(
                    {
                        "field": f"processes[].{key}",
                        "fake": show(fp[0].get(key)),
                        "real": show(rp[0].get(key)),
                        "note": "given on one side only",
                    }
                )
    return out
