"""`gputop replay` on the command line: bad input is one line on stderr and a non-zero exit, before
any screen is drawn (run as a real subprocess, as a user would)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from gputop import cli

DATA = pathlib.Path(__file__).parent / "data" / "h100_fake.json"


def replay(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gputop", "replay", *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def header_only() -> str:
    """A recording killed before its first sample was written: the header and metadata only."""
    lines = DATA.read_text().splitlines()
    return "\n".join(line for line in lines if '"ph":"M"' in line) + "\n"


@pytest.mark.e2e
@pytest.mark.parametrize(
    "content, says",
    [
        (None, "cannot read"),
        ("", "is empty"),
        ("this is not json\n", "is not JSON"),
        ('{"a": 1}\n', "is JSON but not a trace"),
        ('[{"ph":"X","name":"step","pid":1,"tid":1,"ts":0,"dur":1}]\n', "not gputop's"),
        (header_only(), "has no complete sample"),
    ],
    ids=["missing", "empty", "not-json", "json-object", "other-trace", "no-sample"],
)
def test_bad_input_is_one_line_and_exit_1(tmp_path, content, says):
    path = tmp_path / "trace.json"
    if content is not None:
        path.write_text(content)
    result = replay(str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gputop replay: error: ") and says in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.e2e
def test_a_directory_is_refused(tmp_path):
    result = replay(str(tmp_path))
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("gputop replay: error: ")


@pytest.mark.e2e
@pytest.mark.parametrize("speed", ["0.1", "512", "fast"])  # 256x is the top speed (#12.16)
def test_a_bad_speed_is_a_usage_error(speed):
    result = replay(str(DATA), "--speed", speed)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "--speed" in result.stderr


@pytest.mark.e2e
def test_replay_is_a_command_with_help():
    parser = cli.build_parser()
    args = parser.parse_args(["replay", str(DATA), "--speed", "4", "--paused"])
    assert args.command == "replay" and args.speed == 4.0 and args.paused
    result = subprocess.run([sys.executable, "-m", "gputop", "replay", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "space play/pause" in result.stdout and "--speed" in result.stdout


@pytest.mark.e2e
def test_loading_and_checking_a_trace_imports_no_textual(tmp_path):
    """The error path runs before the TUI is imported: a bad file costs no start-up."""
    path = tmp_path / "empty.json"
    path.write_text("")
    code = (
        "import sys, argparse\nfrom gputop.commands import replay\nfrom gputop.environment import Environment\n"
        f"rc = replay.run(argparse.Namespace(trace={str(path)!r}, speed=1.0, paused=False), "
        "Environment.of('replay'), show=print)\n"
        "print(rc, [m for m in sys.modules if m.split('.')[0] == 'textual'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "1 []"


@pytest.mark.unit
def test_a_truncated_trace_loads_what_it_has(tmp_path):
    """The TUI itself is tested in test_tui_replay; here: a cut file is not an error."""
    from gputop.trace import load

    text = DATA.read_text()
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) // 2])
    trace = load(path)
    assert not trace.complete and trace.samples()
    json.loads(text)  # the original is complete JSON
