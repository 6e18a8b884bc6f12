"""On a real GPU: what runs the check, every NVML reading gputop shows crossed with nvidia-smi's
(and torch's) taken at the same moment while a torch process holds memory, where the NVML fake
differs in kind, and what each NVML call gputop makes costs the driver."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import crosscheck as xc
import pytest
import wheels
from machine import Probe, Runner, concurrently, query_smi

pytestmark = [pytest.mark.e2e, pytest.mark.gpu]  # on the real hardware: never in the fast loop

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
SNAPSHOT = ("snapshot", "--json")


def test_the_check_runs_this_trees_gputop(runner, figure):
    """The gputop the children import (from the check's folder, as they run) is this tree's."""
    proc = runner.run(
        "which_gputop", [sys.executable, "-c", "import gputop, gputop.workloads; print(gputop.__version__, gputop.__file__)"], timeout=60
    )
    assert proc.ok, f"{proc.why()}; {wheels.how_to_carry()}"
    version, path = proc.stdout.split()
    where = Path(path).resolve().parent
    figure("python", f"{sys.version.split()[0]} at {sys.executable}")
    figure("gputop", f"{version} from {where}")
    assert where == ROOT / "gputop" or wheels.installed_is_this_tree(where), f"a stale gputop wheel: rerun `{wheels.PREPARE_LINE}` here"
    missing = [m for m in ("textual", "plotext") if importlib.util.find_spec(m) is None]
    assert missing == [], f"{', '.join(missing)} not importable: {wheels.how_to_carry()}"
    assert shutil.which("nvidia-smi"), "nvidia-smi is not on PATH"


@dataclass
class Readings:
    snapshot: dict[str, Any]
    reference: dict[str, xc.Ref]
    props: dict[str, Any]
    fake: dict[str, Any] | None
    notes: list[str]
    probe: str  # "ready", or why the torch probe holds no context


@pytest.fixture(scope="module")
def readings(runner: Runner) -> Readings:
    """nvidia-smi -q -x, nvidia-smi --query-gpu and `gputop snapshot --json`, started together
    while a torch process holds 1 GiB on GPU 0; then the same snapshot over the fake's H100."""
    probe = Probe(runner, timeout=runner.timeout(120))
    try:
        t0 = time.time()
        xml, (query, fields), snap = concurrently(
            lambda: runner.run("smi_q_x", ["nvidia-smi", "-q", "-x"], timeout=60),
            lambda: query_smi(runner),
            lambda: runner.gputop("snapshot", *SNAPSHOT, timeout=60),
        )
    finally:
        probe_err = probe.stop()
    (runner.logs / "probe.err").write_text(probe_err)
    notes = [f"taken together at {time.strftime('%H:%M:%S', time.gmtime(t0))} UTC"]
    dropped = [f for f in xc.SMI_FIELDS if f not in fields]
    if dropped:
        notes.append(f"fields this nvidia-smi does not know (left out): {', '.join(dropped)}")
    for proc, name in ((xml, "smi_q.xml"), (query, "smi_query.csv"), (snap, "snapshot.json")):
        assert proc.ok, f"{name}: {proc.why()}"
        runner.save(name, proc.stdout)
    props = probe.props or {}
    if props:
        runner.save("torch_props.json", json.dumps(props, indent=2) + "\n")
    doc = snap.json()
    assert doc is not None and doc.get("gpus"), "gputop snapshot --json shows no GPU"
    reference = xc.smi_reference(xc.parse_query_csv(query.stdout), xml.stdout)
    src = "torch.cuda.get_device_properties(0)"
    reference["sm_count"] = (
        xc.Ref(props["multi_processor_count"], src)
        if "multi_processor_count" in props
        else xc.Ref(None, src, missing="the torch probe gave nothing")
    )
    fake_env = dict(
        runner.env, GPUTOP_FAKE_NVML="H100_SXM", PYTHONPATH=f"{TESTS / 'sitecustom'}:{TESTS}:{runner.env.get('PYTHONPATH', '')}"
    )
    fake = runner.gputop("snapshot_fake", *SNAPSHOT, timeout=60, env=fake_env)
    if fake.ok:
        runner.save("snapshot_fake_h100.json", fake.stdout)
    ready = "ready" if probe.ready else f"not ready: {props or probe_err.strip()[-300:]}"
    return Readings(doc, reference, props, fake.json(), notes, ready)


def test_every_reading_matches_nvidia_smi(readings, runner, figure):
    rows = xc.cross_check(readings.snapshot["gpus"][0], readings.reference)
    runner.save("crosscheck.md", xc.table(rows))
    runner.save("crosscheck.json", json.dumps([r.as_dict() for r in rows], indent=2) + "\n")
    for note in readings.notes:
        figure("note", note)
    for r in rows:
        figure(r.field, f"gputop {r.gputop}, driver {r.driver} ({r.source}): {r.verdict}", r.rule)
    compared = [r for r in rows if r.verdict in ("match", "both n/a") or r.mismatch]
    figure("rows compared", f"{len(compared)} of {len(rows)} ({len(rows) - len(compared)} unchecked or not shown)")
    assert [f"{r.field}: gputop {r.gputop}, driver {r.driver}" for r in rows if r.mismatch] == []


def test_torch_sees_the_gpu_gputop_shows(readings, figure):
    gpu = readings.snapshot["gpus"][0]
    assert readings.probe == "ready", f"the torch probe holds no context on GPU 0: {readings.probe}"
    props = readings.props
    pids = [p["pid"] for p in gpu.get("processes") or []]
    figure(
        "the torch probe's pid in gputop's process table",
        props.get("pid") in pids,
        "True (False: NVML reports another pid namespace's pids)",
    )
    row = xc.compare("name (torch)", gpu["info"].get("name"), xc.Ref(props.get("name"), "torch"), xc.TEXT)
    figure("name: gputop against torch", f"{row.gputop} / {row.driver}: {row.verdict}")
    assert not row.mismatch


def test_where_the_fake_differs_from_this_driver(readings, runner, figure):
    """Not a pass or fail of gputop: the list of what tests/fakenvml.py should learn."""
    assert readings.fake is not None and readings.fake.get("gpus"), "no snapshot over the fake's H100_SXM"
    diffs = xc.fake_differences(readings.snapshot, readings.fake)
    runner.save("fake_differences.json", json.dumps(diffs, indent=2) + "\n")
    figure("fields where the fake (H100_SXM) differs in kind", len(diffs))
    for d in diffs:
        figure(d["field"], f"fake {d['fake']}, real {d['real']}: {d['note']}")


def test_each_nvml_call_gputop_makes_is_timed(runner, figure):
    proc = runner.run(
        "nvml_latency",
        [sys.executable, str(Path(__file__).with_name("nvml_latency.py")), "--seconds", "5", "--interval", "0.1", "--out", str(runner.out)],
        timeout=60,
    )
    assert proc.ok, proc.why()
    result = json.loads((runner.out / "nvml_latency.json").read_text())
    ticks = {r["symbol"]: r for r in result["symbols"] if r["phase"] == "tick"}
    figure("ticks / GPUs / sources opened", f"{result['ticks']} / {result['gpus']} / {result['open_s'] * 1e3:.1f} ms")
    for r in result["symbols"]:
        figure(
            f"{r['phase']} {r['symbol']}",
            f"median {r['median_us']:.1f} us, max {r['max_us']:.1f} us, {r['calls']} calls, returns {r['returns']}",
        )
    figure("NVML time per tick", f"{sum(r['per_tick_us'] or 0 for r in ticks.values()):.1f} us")
    assert result["gpus"] >= 1 and result["ticks"] >= 40
    assert ticks["nvmlDeviceGetUtilizationRates"]["calls"] >= result["ticks"] * 0.9
