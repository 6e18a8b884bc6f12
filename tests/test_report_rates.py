"""``report``'s samples/s for one process is a rate over its steps (their samples over their
time), checked against what an unmodified script measures of itself: a DataLoader with 2 workers
makes its steps alternate between ~1 ms and ~60 ms, where a median of per-step rates is far off
(issue 28: report said 1,902 samples/s where the script made ~461)."""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from helpers import gputop_h100 as gputop

SCRIPTS = pathlib.Path(__file__).resolve().parent / "insight_scripts"


@pytest.mark.e2e
def test_a_single_process_samples_per_s_is_its_samples_over_its_time(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "t.json"
    done = gputop("record", "--out", str(out), "--interval", "0.25", "--run", str(SCRIPTS / "loader_workers.py"), timeout=240)
    assert done.returncode == 0, done.stderr
    own = float(re.search(r"own samples/s ([\d.]+)", done.stdout)[1])
    w = json.loads(gputop("report", "--json", str(out)).stdout)["workload"]
    assert w["steps"] == 30 and w["steps_measured"] == 29
    assert w["samples_per_s"] == pytest.approx(own, rel=0.05)
    # the trap the rate avoids: the median of the per-step rates is nowhere near it
    assert w["samples_per_s_median"] > 2 * own, (w["samples_per_s_median"], own)
    text = gputop("report", "--no-chart", str(out)).stdout
    assert re.search(rf"^  samples/s +{w['samples_per_s']:,.1f}$", text, re.M)
