"""Detected ("auto") steps as the reader takes them, and the launcher's choice to instrument:
unit tests with no child process."""

from __future__ import annotations

import json

import pytest

from gputop.model import WorkloadStep
from gputop.workload import Workload, inject
from gputop.workload.events import EventReader
from gputop.workload.inject import _gputop_autostep as hook
from gputop.workloads import events as writer_side

pytestmark = pytest.mark.unit


def line(**e) -> bytes:
    e.setdefault("ts_ns", 1_000_000_000)
    return json.dumps(e).encode()


def test_an_auto_step_may_lack_samples_and_carries_its_data_waits():
    r = EventReader("train.py")
    step = r.feed(
        line(
            event="step",
            step=1,
            samples=None,
            loss=None,
            wall_s=0.5,
            source="auto",
            data_wait_s=0.2,
            waits=[[900_000_000, 200_000_000], ["x", 1]],
        )
    )
    assert isinstance(step, WorkloadStep)
    assert step.samples is None and step.source == "auto" and step.data_wait_s == 0.2
    assert step.waits == ((900_000_000, 200_000_000),)  # the malformed pair left out
    assert r.steps_source == "auto"


def test_a_reported_step_without_samples_is_still_refused():
    r = EventReader("mlp")
    assert r.feed(line(event="step", step=1, samples=None, loss=None, wall_s=0.5)) is None
    assert r.ignored == 1


def test_a_script_that_reports_its_own_steps_wins_over_the_detected_ones():
    r = EventReader("train.py")
    assert r.feed(line(event="step", step=1, samples=None, loss=None, wall_s=0.5, source="auto")) is not None
    assert r.feed(line(event="start", device="cuda:0", batch_size=64)) is not None
    assert r.feed(line(event="step", step=1, samples=64, loss=1.0, wall_s=0.5)).source == "events"
    assert r.feed(line(event="step", step=2, samples=None, loss=None, wall_s=0.5, source="auto")) is None
    assert r.feed(line(event="start", source="auto", device="cpu")) is None
    assert r.steps_source == "events" and r.start["device"] == "cuda:0"


def test_an_auto_start_adds_what_it_saw():
    r = EventReader("train.py")
    mark = r.feed(line(event="start", source="auto", device="cuda:1", batch_size=32, pid=7))
    assert mark.args["source"] == "auto" and r.start["device"] == "cuda:1" and r.start["batch_size"] == 32


def test_scripts_are_instrumented_and_bundled_workloads_are_not(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")
    assert Workload(str(script)).instrumented
    assert not Workload(str(script), instrument=False).instrumented
    assert not Workload("mlp").instrumented  # it reports its own steps


def test_the_injected_environment_puts_the_directory_first():
    env = inject.environment({"PYTHONPATH": "/mine", "X": "1"})
    assert env["PYTHONPATH"].split(":") == [inject.DIR, "/mine"] and env[inject.ENV_TOKEN] == "1"
    assert inject.environment({})["PYTHONPATH"] == inject.DIR


def test_names_shared_by_the_hook_and_the_reader_agree():
    assert hook.ENV_TOKEN == inject.ENV_TOKEN and hook.ENV_FD == writer_side.ENV_FD


def test_the_batch_size_is_the_first_dimension_of_the_first_tensor():
    class T:
        def __init__(self, *shape):
            self.shape = shape

    assert hook._batch_size(T(8, 3)) == 8
    assert hook._batch_size((T(4, 2), T(4))) == 4 and hook._batch_size([[T(2)]]) == 2
    assert hook._batch_size({"input_ids": T(16, 128), "labels": T(16)}) == 16
    assert hook._batch_size(T()) is None and hook._batch_size("text") is None and hook._batch_size(()) is None


def test_a_module_target_is_run_with_python_m(tmp_path):
    import sys

    import pytest

    from gputop.cli import run_module
    from gputop.workload import WorkloadError, resolve

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("raise SystemExit('never run by gputop itself')\n")
    (tmp_path / "pkg" / "train.py").write_text("")
    assert resolve("-m pkg.train", str(tmp_path)) == ("pkg.train", (sys.executable, "-m", "pkg.train"))
    with pytest.raises(WorkloadError, match="no module named 'nothere'"):
        resolve("-m nothere.train", str(tmp_path))
    with pytest.raises(WorkloadError, match="a module name"):
        resolve("-m pkg/train", str(tmp_path))
    assert run_module(["record", "--out", "t.json", "--run", "-m", "pkg.train"]) == ["record", "--out", "t.json", "--run", "-m pkg.train"]
    assert run_module(["compare", "-m", "pkg.train", "--steps", "3"]) == ["compare", "-m pkg.train", "--steps", "3"]
    # "compare" as a value or as the workload's own word is not the command
    argv = ["record", "--out", "t.json", "--run", "tool.py", "--", "compare", "-m", "x"]
    assert run_module(argv) == argv
    argv = ["report", "compare", "-m"]  # a file named compare, then an option report refuses itself
    assert run_module(argv) == argv


def test_no_instrument_is_an_option_of_the_live_view_and_of_record():
    from gputop.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["--run", "train.py"]).live_instrument is True
    assert parser.parse_args(["--run", "train.py", "--no-instrument"]).live_instrument is False
    rec = parser.parse_args(["record", "--out", "t.json", "--run", "train.py", "--no-instrument", "--quiet"])
    assert rec.instrument is False and rec.quiet is True


def test_a_start_s_tokens_per_sample_reaches_the_trace_mark_and_not_a_bad_one():
    r = EventReader("transformer")
    mark = r.feed(line(event="start", device="cpu", batch_size=8, sample_unit="sequences", tokens_per_sample=1024))
    assert mark.args["tokens_per_sample"] == 1024 and r.start["tokens_per_sample"] == 1024
    r = EventReader("transformer")
    mark = r.feed(line(event="start", device="cpu", tokens_per_sample=-3))
    assert "tokens_per_sample" not in mark.args
