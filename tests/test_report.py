"""`gputop report`: numbers from a recording, as text with a chart or as JSON; bad input is one line."""

from __future__ import annotations

import argparse
import io
import json
import pathlib
import subprocess
import sys
from dataclasses import replace

import pytest

from gputop import format as fmt
from gputop import trace
from gputop.commands import report
from gputop.environment import Environment
from gputop.model import Sample
from helpers import T0, make_samples, write, write_with_workload

DATA = pathlib.Path(__file__).resolve().parent / "data"
FIXTURE = DATA / "h100_fake.json"


def run(path, *flags: str) -> tuple[int, str]:
    ns = argparse.Namespace(trace=str(path), json="--json" in flags, no_chart="--no-chart" in flags)
    out = io.StringIO()
    return report.run(ns, Environment.of("report", stdout=out)), out.getvalue()


@pytest.mark.unit
def test_text_report_of_the_fixture():
    rc, text = run(FIXTURE)
    assert rc == 0
    assert "GPU 0 NVIDIA H100 80GB HBM3" in text and "CPU (" in text
    for words in ("sm_active_pct", "power_w", "busy_cores", "Energy", "Util trap", "mean", "p95"):
        assert words in text
    assert "n/a: " in text and "fan_pct" in text  # no fan on an SXM board: listed as n/a, not 0
    assert "CPU busy cores % vs GPU SM activity %" in text  # the plotext chart
    assert "\x1b[" not in text  # not a terminal: no colour codes


@pytest.mark.unit
def test_json_report_numbers_match_the_samples():
    rc, out = run(FIXTURE, "--json")
    assert rc == 0
    doc = json.loads(out)
    samples = trace.load(FIXTURE).samples()
    assert doc["samples"] == len(samples) and doc["complete"] is True
    assert doc["duration_s"] == pytest.approx((samples[-1].ts_ns - samples[0].ts_ns) / 1e9)
    sm = [s.gpus[0].sm_active_pct for s in samples if s.gpus[0].sm_active_pct is not None]
    st = doc["gpus"][0]["metrics"]["sm_active_pct"]
    assert st["n"] == len(sm) and st["mean"] == pytest.approx(sum(sm) / len(sm)) and st["max"] == max(sm)
    assert doc["gpus"][0]["metrics"]["fan_pct"] == {"n": 0, "mean": None, "p50": None, "p95": None, "max": None}
    energy = [s.gpus[0].energy_j for s in samples]
    assert doc["gpus"][0]["energy_j"] == pytest.approx(energy[-1] - energy[0])
    assert doc["gpus"][0]["energy_source"] == "energy counter"
    assert "CPU busy" not in out  # no chart in JSON


@pytest.mark.unit
def test_energy_recorded_without_a_counter_is_labelled_integrated(tmp_path):
    samples = make_samples(4)
    no_counter = replace(samples[0].gpus[0].info, energy_counter=False)
    samples = [replace(s, gpus=(replace(s.gpus[0], info=no_counter), *s.gpus[1:])) for s in samples]
    rc, out = run(write(tmp_path / "t.json", samples), "--json")
    gpu0 = json.loads(out)["gpus"][0]
    assert rc == 0 and gpu0["energy_source"] == "power integrated over time (the GPU keeps no energy counter)"
    gpus = trace.load(tmp_path / "t.json").gpus
    assert gpus[0].energy_counter is False and gpus[1].energy_counter is None  # the header keeps what it was told


@pytest.mark.unit
def test_stats_percentiles_and_gaps():
    st = report.stats([None, 4.0, 1.0, 3.0, 2.0, None])
    assert st == {"n": 4, "mean": 2.5, "p50": 2.5, "p95": pytest.approx(3.85), "max": 4.0}
    assert report.stats([None, None])["mean"] is None


@pytest.mark.unit
def test_energy_integration_skips_gaps():
    s = 1_000_000_000
    assert report.integrate_j([0, 10 * s], [100.0, 100.0]) == pytest.approx(1000.0)
    assert report.integrate_j([0, s, 2 * s, 3 * s], [100.0, None, 50.0, 50.0]) == pytest.approx(50.0)
    assert report.integrate_j([0, s], [None, 5.0]) is None


def _with(samples: list[Sample], k: int, **gpu0) -> Sample:
    s = samples[k]
    return replace(s, gpus=(replace(s.gpus[0], **gpu0), *s.gpus[1:]))


@pytest.mark.unit
def test_util_trap_share_energy_fallback_and_cpu_energy(tmp_path):
    samples = make_samples(4)
    samples = [
        _with(samples, 0, gpu_util_pct=95.0, sm_active_pct=20.0, energy_j=None),
        _with(samples, 1, gpu_util_pct=95.0, sm_active_pct=80.0, energy_j=None),
        _with(samples, 2, gpu_util_pct=99.0, sm_active_pct=10.0, energy_j=None),
        _with(samples, 3, gpu_util_pct=None, sm_active_pct=10.0, energy_j=None),
    ]
    rc, out = run(write(tmp_path / "t.json", samples), "--json")
    doc = json.loads(out)
    gpu0 = doc["gpus"][0]
    assert gpu0["util_trap_share"] == pytest.approx(2 / 3) and gpu0["util_trap_samples"] == 3
    assert gpu0["energy_source"] == "power integrated over time" and gpu0["energy_j"] > 0
    assert doc["gpus"][1]["util_trap_share"] is None  # no SM activity on the A100 here
    assert doc["gpus"][1]["lost_samples"] == 1
    assert doc["cpu"]["energy_j"] is not None  # RAPL power integrated (sample 2 has a gap)
    rc, text = run(tmp_path / "t.json", "--no-chart")
    assert "67 % of 3 samples" in text and "n/a (no SM activity" in text
    assert "lost (not answering) in 1 samples" in text


@pytest.mark.unit
def test_a_lost_h100_s_missing_sm_activity_is_said_to_be_the_loss_not_its_architecture(tmp_path):
    # #26.9: the reason was "GPM needs Hopper or newer" for every GPU without SM activity
    samples = make_samples(4)
    samples = [_with(samples, k, sm_active_pct=None, lost=k >= 1) for k in range(4)]
    rc, out = run(write(tmp_path / "t.json", samples), "--json")
    gpus = json.loads(out)["gpus"]
    assert gpus[0]["util_trap_share"] is None and gpus[0]["lost_samples"] == 3
    assert gpus[0]["util_trap_na_reason"] == "the GPU was lost before GPM gave a reading"
    assert gpus[1]["util_trap_na_reason"] == "needs GPM: Hopper or newer"  # the A100: its architecture
    rc, text = run(tmp_path / "t.json", "--no-chart")
    assert "GPU 0   n/a (no SM activity: the GPU was lost before GPM gave a reading)" in text
    assert "GPU 1   n/a (no SM activity: needs GPM: Hopper or newer)" in text


@pytest.mark.unit
def test_cut_off_trace_is_reported_with_a_note(tmp_path):
    path = write(tmp_path / "t.json", make_samples(), close=False)
    rc, text = run(path, "--no-chart")
    assert rc == 0 and "did not finish cleanly" in text


@pytest.mark.unit
@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "empty"),
        (b"not json at all", "not JSON"),
        (b'{"traceEvents": 3}', "not a trace"),
        (b'[{"ph":"X","name":"step","pid":1,"tid":1,"ts":0,"dur":5}]', "not gputop's"),
        (b'[{"ph":"M","name":"gputop","pid":10000000,"args":{"trace_version":3}}]', "version 3"),
        (b'[{"ph":"M","name":"gputop","pid":10000000,"args":{"trace_version":1,"cpu_cores":1}}]', "no complete sample"),
        (b'[{"ph":"M","name":"gputop","pid":10000000,"args":{"trace_version":1,"gpus":"H100"}}]', "GPU description"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(tmp_path, capsys, content, words):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    rc, out = run(path)
    err = capsys.readouterr().err
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("gputop report: error:") and words in err


@pytest.mark.unit
def test_bad_workload_start_values_are_n_a_not_a_traceback(tmp_path):
    """A start mark read from a file: a string where a number belongs is n/a."""
    from gputop.workload import WorkloadMark, WorkloadStep

    path = write_with_workload(
        tmp_path / "w.json",
        [
            WorkloadMark(
                "start",
                T0 + 1,
                name="fake",
                args={"flops_per_step": "1e9", "peak_flops": True, "batch_size": "8", "device": 3, "steps_planned": -1, "sample_unit": 5},
            ),
            *(WorkloadStep(k, 8, None, 0.01, T0 + k * 20_000_000) for k in range(1, 4)),
        ],
    )
    rc, text = run(path, "--no-chart")
    assert rc == 0
    lines = text.splitlines()
    head = lines.index(next(x for x in lines if x.startswith("Workload fake")))
    assert lines[head].startswith("Workload fake (pid 4242): n/a, n/a, batch n/a; 3 steps")
    rows = {x.split()[0]: x for x in lines[head + 1 :]}
    assert rows["samples/s"].split()[-1] == "800.0"
    assert rows["TFLOP/s"].split()[-1] == "n/a" and rows["MFU"].split()[-1] == "n/a"


@pytest.mark.unit
def test_missing_file(tmp_path, capsys):
    rc, _ = run(tmp_path / "nope.json")
    assert rc == 1 and "cannot read" in capsys.readouterr().err


@pytest.mark.e2e
def test_json_report_never_imports_plotext():
    code = (
        "import argparse, io, sys\n"
        "from gputop.commands import report\n"
        "from gputop.environment import Environment\n"
        f"ns = argparse.Namespace(trace={str(FIXTURE)!r}, json=True, no_chart=False)\n"
        "assert report.run(ns, Environment.of('report', stdout=io.StringIO())) == 0\n"
        "print('plotext' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.e2e
def test_cli_report_on_bad_input_is_one_line_no_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"ph": "C"')
    for path in (bad, tmp_path / "missing.json"):
        proc = subprocess.run([sys.executable, "-m", "gputop", "report", str(path)], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 1 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.e2e
def test_cli_report_of_the_fixture():
    proc = subprocess.run([sys.executable, "-m", "gputop", "report", str(FIXTURE), "--json"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"


@pytest.mark.unit
@pytest.mark.parametrize("tokens, shown", [(1024, "819,200   (1024 per sequence)"), ("1024", None), (0, None)])
def test_a_language_model_gets_tokens_per_second_where_its_start_says_tokens_per_sample(tmp_path, tokens, shown):
    """The transformer workload says its context length (tokens_per_sample); a string or 0 read
    from a file is not a count, and then there is no tokens/s at all rather than a guess."""
    from gputop.workload import WorkloadMark, WorkloadStep

    path = write_with_workload(
        tmp_path / "w.json",
        [
            WorkloadMark("start", T0 + 1, name="fake", args={"sample_unit": "sequences", "batch_size": 8, "tokens_per_sample": tokens}),
            *(WorkloadStep(k, 8, None, 0.01, T0 + k * 20_000_000) for k in range(1, 5)),
        ],
    )
    rc, text = run(path, "--no-chart")
    assert rc == 0
    rows = {x.split()[0]: x for x in text.splitlines() if x.startswith("  ")}
    assert rows["sequences/s"].split()[-1] == "800.0"
    if shown is None:
        assert "tokens/s" not in rows
    else:
        assert rows["tokens/s"].endswith(shown)
        # the values line up under one another
        assert rows["tokens/s"].index("819") == rows["sequences/s"].index("800") == rows["TFLOP/s"].index("n/a")
    rc, out = run(path, "--json")
    w = json.loads(out)["workload"]
    assert w["tokens_per_sample"] == (tokens if shown else None)
    assert w["tokens_per_s_median"] == (pytest.approx(819_200) if shown else None)


@pytest.mark.unit
def test_slow_steps_keep_one_unit_per_quantity_and_no_scientific_notation(tmp_path):
    # #26.12: "step time 7.09e+04 ms" beside "step p50 70.9 s"; rates as 5.71e+03/s
    from gputop.workload import WorkloadMark, WorkloadStep

    path = write_with_workload(
        tmp_path / "w.json",
        [
            WorkloadMark("start", T0 + 1, name="fake", args={"batch_size": 8, "flops_per_step": 7.09e15}),
            *(WorkloadStep(k, 8, None, 70.9, T0 + k * 20_000_000) for k in range(1, 4)),
        ],
    )
    rc, text = run(path, "--no-chart")
    assert rc == 0 and "e+0" not in text and "e-0" not in text
    lines = text.splitlines()
    head = lines.index(next(x for x in lines if x.startswith("Workload fake")))
    rows = {x.split()[0]: x for x in lines[head + 1 :]}
    assert rows["step"].split()[-1] == "s" and rows["step"].split()[-2] == "70.9"  # as step p50 says it


@pytest.mark.unit
@pytest.mark.parametrize(
    "value, text", [(5710.0, "5,710"), (19.14, "19.1"), (0.0371, "0.0371"), (0.00005, "0.00005"), (0.0, "0"), (None, "n/a")]
)
def test_amount_never_goes_scientific(value, text):
    assert fmt.amount(value) == text


@pytest.mark.unit
@pytest.mark.parametrize("seconds, text", [(70.9, "70.9 s"), (1234.4, "1,234 s"), (0.0681, "68.1 ms")])
def test_step_time_never_goes_scientific(seconds, text):
    assert fmt.step_time(seconds) == text
