"""trace.chrome: a Chrome trace document's events streamed, the same as json.loads gives them."""

import json
import pathlib
import subprocess
import sys

import pytest

from gputop.trace import chrome
from gputop.trace.chrome import ChromeEvents, ChromeTraceError

DATA = pathlib.Path(__file__).parent / "data"
REAL_TORCH = DATA / "torch_cpu_profile.json"  # exported by torch 2.13's profiler (CPU)
RECORDING = DATA / "h100_fake.json"


def streamed(path):
    source = ChromeEvents(path)
    return list(source.events()), source


def expected(path):
    doc = json.loads(pathlib.Path(path).read_bytes())
    if isinstance(doc, list):
        return doc, {}
    return doc["traceEvents"], {k: v for k, v in doc.items() if k != "traceEvents"}


DOCS = {
    "compact, keys after": '{"traceEvents":[{"ph":"X","name":"a\u00e9\u4e2d","ts":12345.678,"dur":1}],'
    '"baseTimeNanoseconds":1790857026000000000,"x":[1,{"y":null}]}',
    "pretty, keys before": json.dumps(
        {
            "schemaVersion": 1,
            "deviceProperties": [{"n": "cpu"}],
            "traceEvents": [{"ph": "M", "pid": 1}, {"ph": "i", "ts": 7}],
            "traceName": "t",
        },
        indent=4,
    ),
    "bare array": ' [ {"ph":"C","ts":1.5,"args":{"v":-2e-3}} ,\n{"ph":"X","ts":2} ]\n',
    "empty array": '{"traceEvents": [], "baseTimeNanoseconds": 5}',
    # a top-level number cut after "1." or "1.5e" was read as 1, then "." was "not JSON"
    "floats at the top": '{"traceEvents":[{"ph":"X","ts":1}],"a":1.5e3,"bb":-0.25,"ccc":12.0E-2,"d":7}',
}


@pytest.mark.unit
@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64, 1 << 20])
@pytest.mark.parametrize("name", [*DOCS, "real"])
def test_events_and_keys_are_json_loads_whatever_the_chunks(tmp_path, monkeypatch, name, chunk):
    """Tiny chunks put every boundary inside a number, a string, a multi-byte character."""
    monkeypatch.setattr(chrome, "CHUNK", chunk)
    path = REAL_TORCH
    if name != "real":
        path = tmp_path / "t.json"
        path.write_text(DOCS[name], encoding="utf-8")
    events, source = streamed(path)
    want_events, want_keys = expected(path)
    assert events == want_events and source.keys == want_keys
    assert source.array == (name == "bare array")
    assert list(source.events()) == want_events  # read again, from the start


@pytest.mark.unit
def test_the_real_profile_is_cut_anywhere_into_one_error(tmp_path, monkeypatch):
    monkeypatch.setattr(chrome, "CHUNK", 4096)
    text = REAL_TORCH.read_bytes().rstrip()
    cut = tmp_path / "cut.json"
    for at in range(0, len(text), 97):
        cut.write_bytes(text[:at])
        with pytest.raises(ChromeTraceError) as err:
            list(ChromeEvents(cut).events())
        assert "not JSON" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.unit
@pytest.mark.parametrize(
    "content, not_trace",
    [
        ("", False),
        ("5", False),
        ('{"traceEvents": [1]}', True),
        ('{"a": 1}', True),
        ('{"traceEvents": 3}', True),
        ('{"traceEvents": [], "traceEvents": []}', True),
        ('{"traceEvents": []} x', False),
        ('{"traceEvents": [{}] "k": 1}', False),
        ("[{},]", False),
    ],
)
def test_what_is_not_a_trace_is_said_so(tmp_path, content, not_trace):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ChromeTraceError) as err:
        list(ChromeEvents(path).events())
    assert err.value.not_trace == not_trace


@pytest.mark.e2e
def test_merge_of_a_cut_profile_is_one_line_and_writes_nothing(tmp_path):
    cut = tmp_path / "cut.json"
    cut.write_bytes(REAL_TORCH.read_bytes()[:5000])
    out = tmp_path / "o.json"
    done = subprocess.run(
        [sys.executable, "-m", "gputop", "merge", str(RECORDING), str(cut), "--out", str(out)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and done.stderr.startswith("gputop merge: error: ")
    assert "not JSON" in done.stderr and len(done.stderr.splitlines()) == 1 and not out.exists()
