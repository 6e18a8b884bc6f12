"""The CLI as a user meets it: a subprocess, with and without (fake) GPUs."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from gputop import metrics
from helpers import gputop

pytestmark = pytest.mark.e2e

TESTS = pathlib.Path(__file__).resolve().parent


def test_version_and_help():
    out = gputop("--version")
    assert out.returncode == 0 and out.stdout.startswith("gputop ")
    out = gputop("--help")
    assert out.returncode == 0
    assert "examples:" in out.stdout and "gputop snapshot --json" in out.stdout


@pytest.mark.parametrize("args", [["--bogus"], ["snapshot", "--bogus"], ["--interval", "abc"], ["--interval", "0"], ["nosuchcommand"]])
def test_bad_flags_are_one_line_and_exit_2(args):
    out = gputop(*args)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gputop") and "error" in lines[0]
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "spec, reason",
    [("none:library_not_found", "not found"), ("none:driver_not_loaded", "driver not loaded"), ("none:no_permission", "permission")],
)
def test_snapshot_without_gpu_says_why_and_exits_0(spec, reason):
    out = gputop("snapshot", fake=spec)
    assert out.returncode == 0, out.stderr
    assert "cores busy" in out.stdout
    gpu_line = [line for line in out.stdout.splitlines() if line.startswith("GPU")]
    assert len(gpu_line) == 1 and reason in gpu_line[0].lower()


def test_snapshot_text_with_h100():
    out = gputop("snapshot", fake="H100_SXM")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "H100" in text and "of 132 active" in text
    assert "TB/s" in text  # DRAM bandwidth derived from GPM x peak
    assert "fan n/a" in text  # datacentre board: no fan, shown as n/a, never 0


def test_snapshot_json_keys_are_metric_names():
    out = gputop("snapshot", "--json", fake="H100_SXM*2")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(metrics.CPU_METRICS) <= set(doc["cpu"])
    assert len(doc["gpus"]) == 2
    for gpu in doc["gpus"]:
        assert set(metrics.GPU_METRICS) <= set(gpu)
        assert gpu["info"]["sm_count"] == 132
        assert gpu["sm_active_pct"] is not None and 0 <= gpu["sm_active_pct"] <= 100
        assert gpu["fan_pct"] is None
    assert doc["gpu_unavailable"] is None


def test_snapshot_on_a_gpu_without_an_energy_counter_says_n_a_not_its_own_quarter_second():
    spec = "H100_SXM,H100_SXM+energy_start_mj=none"
    text = gputop("snapshot", fake=spec)
    assert text.returncode == 0, text.stderr
    energy = [line for line in text.stdout.splitlines() if "energy" in line]
    assert len(energy) == 2
    assert "since the driver loaded" in energy[0] and "n/a" not in energy[0].split("energy")[1]
    assert "energy n/a (no energy counter on this GPU)" in energy[1]
    out = gputop("snapshot", "--json", fake=spec)
    assert out.returncode == 0, out.stderr
    counted, uncounted = json.loads(out.stdout)["gpus"]
    assert counted["info"]["energy_counter"] is True and counted["energy_j"] > 100_000
    assert uncounted["info"]["energy_counter"] is False and uncounted["energy_j"] is None


def test_snapshot_json_without_gpu():
    out = gputop("snapshot", "--json", fake="none:driver_not_loaded")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["gpus"] == [] and "driver" in doc["gpu_unavailable"].lower()
    assert len(doc["cpu"]["core_util_pct"]) == os.cpu_count()


def test_snapshot_into_closed_pipe_is_quiet():
    proc = subprocess.run(f"{sys.executable} -m gputop snapshot | head -c 1", shell=True, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv", [[], ["--run", "mlp"], ["replay", "tests/data/h100_fake.json"]])
def test_the_live_view_without_a_terminal_is_one_line_not_a_hang(argv):
    """Textual without a tty prints a traceback and hangs; gputop says why and exits 2."""
    out = subprocess.run(
        [sys.executable, "-m", "gputop", *argv], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, cwd=TESTS.parent
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "needs a terminal, and stdin is not one" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "argv, first_words, hint",
    [
        # a script's own arguments given before '--'
        (["--run", "train.py", "--epochs", "1"], "gputop: error: unexpected argument '1'", "arguments for train.py go after '--'"),
        (
            ["record", "--out", "t.json", "--run", "train.py", "--lr", "0.1"],
            "gputop record: error: unrecognized arguments: --lr",
            "arguments for train.py go after '--'",
        ),
        # an unknown option is told by the command it was given to, before any missing option
        (["snapshot", "--bogus"], "gputop snapshot: error: unrecognized arguments: --bogus", "'gputop snapshot --help'"),
        (["record", "--bogus"], "gputop record: error: unrecognized arguments: --bogus", "'gputop record --help'"),
        # bounds people can read
        (
            ["record", "--out", "t.json", "--duration", "-5"],
            "gputop record: error: argument --duration: must be between 0 s and 31622400 s (366 days), got -5",
            "",
        ),
        (["--interval", "0"], "gputop: error: argument --interval: must be between 0.01 s and 3600 s (1 h), got 0", ""),
        (["record", "--out", ""], "gputop record: error: argument --out: needs a file name", ""),
    ],
)
def test_argument_errors_say_what_to_do(tmp_path, argv, first_words, hint):
    out = gputop(*argv)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(first_words) and hint in out.stderr
    assert not (pathlib.Path.cwd() / "t.json").exists()


def test_an_abbreviated_option_is_still_argparse_s_to_take(tmp_path):
    out = gputop("record", "--out", str(tmp_path / "t.json"), "--dur", "-5")
    assert out.returncode == 2 and out.stderr.startswith("gputop record: error: argument --duration: must be")


def test_double_dash_ends_the_options_of_a_command_that_runs_no_workload(tmp_path):
    trace = tmp_path / "-odd.json"
    out = gputop("report", "--", str(trace))
    assert out.returncode == 1 and out.stderr.startswith(f"gputop report: error: cannot read {trace}")
