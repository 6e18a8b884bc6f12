"""The trace file: written crash-safe, read back exactly, and read as far as it goes when cut."""

from __future__ import annotations

import json
import math
import pathlib

import pytest

import traceval
from gputop import metrics, trace
from gputop.model import CpuSample, GpuSample, Sample
from gputop.trace import CPU_PID, TraceError, TraceWriter
from helpers import A100, H100, T0, make_samples, write

pytestmark = pytest.mark.unit

DATA = pathlib.Path(__file__).resolve().parent / "data"


def test_round_trip_gives_the_same_samples(tmp_path):
    samples = make_samples()
    path = write(tmp_path / "t.json", samples)
    loaded = trace.load(path)
    assert loaded.complete and loaded.version == trace.TRACE_VERSION
    assert loaded.gpus == (H100, A100)
    assert loaded.settings["interval_s"] == 0.01
    back = loaded.samples()
    assert back == samples  # exact: ns timestamps, ints stay ints, None stays None
    assert back[1].gpus[0].sm_active_pct is None and back[2].cpu.cpu_power_w is None
    assert back[3].gpus[1].lost and not back[4].gpus[1].lost


def test_a_gpu_not_read_again_writes_nothing_and_reads_back_carried(tmp_path):
    """The Sampler hands the same GpuSample objects to samples between two GPU reads (100 Hz
    host, GPUs every ~0.1 s): only the CPU is written then, and the reader carries the GPU's
    last values forward, while a new reading that lacks a value still reads as None."""
    base = make_samples(5)
    h100, a100 = base[0].gpus
    fresh = GpuSample(H100, gpu_util_pct=50.0, sm_active_pct=None, clock_event_reasons=())
    gpus = [(h100, a100), (h100, a100), (h100, a100), (fresh, a100), (fresh, a100)]
    samples = [Sample(ts_ns=s.ts_ns, cpu=s.cpu, gpus=g) for s, g in zip(base, gpus)]
    path = write(tmp_path / "t.json", samples)
    events = traceval.assert_valid(path.read_text(), strict=True).events
    h100_counters = [e for e in events if e.get("ph") == "C" and e["pid"] == trace.gpu_pid(0)]
    assert sorted({e["ts"] for e in h100_counters}) == sorted(
        {float(trace.ts_text(samples[i].ts_ns)) for i in (0, 3)}
    )  # written when read, only
    cpu_ts = {e["ts"] for e in events if e.get("ph") == "C" and e["pid"] == CPU_PID}
    assert len(cpu_ts) == 5
    assert trace.load(path).samples() == samples  # carried values are the same values
    back = trace.load(path).samples()
    assert back[2].gpus[0].sm_active_pct == h100.sm_active_pct and back[4].gpus[0].sm_active_pct is None


def test_a_gpu_read_where_nothing_answered_reads_back_na_not_the_values_before(tmp_path):
    """A driver that answers nothing (not lost: every query fails) writes no counter; an instant
    says the GPU was read, so the reader does not carry the last good values over it."""
    base = make_samples(4)
    h100 = base[0].gpus[0]
    silent = GpuSample(H100, clock_event_reasons=h100.clock_event_reasons)  # every metric None
    gpus = [(h100,), (silent,), (silent,), (h100,)]
    samples = [Sample(ts_ns=s.ts_ns, cpu=s.cpu, gpus=g) for s, g in zip(base, gpus)]
    path = write(tmp_path / "t.json", samples)
    events = traceval.assert_valid(path.read_text(), strict=True).events
    assert [e["name"] for e in events if e.get("cat") == trace.CAT_EMPTY] == ["GPU 0: no values"]
    back = trace.load(path).samples()
    assert back[1].gpus[0].power_w is None and back[2].gpus[0].power_w is None  # n/a, not carried
    assert back[3].gpus[0].power_w == h100.power_w
    assert back == samples


def test_a_version_1_trace_still_loads():
    text = (DATA / "h100_fake.json").read_text()
    assert '"trace_version":1' in text
    assert trace.parse(text).samples()


def test_ram_load_and_core_clocks_are_written_when_they_change_and_read_back_carried(tmp_path):
    """The host re-reads RAM, load and core clocks every 0.5 s; at 100 Hz most samples carry
    them unchanged. They are written only when changed (ram_total_bytes with them), and the
    reader carries them; a load that becomes unknown is written as a change and reads None."""
    base = make_samples(5)
    slow = dict(ram_used_bytes=5 * 2**30, ram_total_bytes=16 * 2**30, load1=0.5, core_freq_mhz=(3000.0, None))
    loads = [0.5, 0.5, 0.5, None, None]
    samples = [
        Sample(
            ts_ns=s.ts_ns,
            gpus=(),
            cpu=CpuSample(
                cpu_util_pct=s.cpu.cpu_util_pct, core_util_pct=s.cpu.core_util_pct, cpu_power_w=s.cpu.cpu_power_w, **{**slow, "load1": load}
            ),
        )
        for s, load in zip(base, loads)
    ]
    path = write(tmp_path / "t.json", samples)
    events = traceval.assert_valid(path.read_text(), strict=True).events
    written = [e["ts"] for e in events if e.get("name") == "ram_total_bytes"]
    assert len(written) == 2  # the first sample, and the one where load1 went unknown
    assert len([e for e in events if e.get("name") == "core0.core_freq_mhz"]) == 2
    assert len([e for e in events if e.get("name") == "core1.core_util_pct"]) == 5
    back = trace.load(path).samples()
    assert back == samples
    assert back[2].cpu.load1 == 0.5 and back[3].cpu.load1 is None and back[4].cpu.ram_used_bytes == 5 * 2**30


def test_clean_close_is_strict_json_and_passes_the_validator(tmp_path):
    text = write(tmp_path / "t.json", make_samples()).read_text()
    json.loads(text)
    report = traceval.assert_valid(text, strict=True)
    assert report.closed and not report.trailing_comma
    assert text.isascii() and text.count("\n") == len(report.events) + 1  # one event a line, then ]


def test_unclosed_file_is_valid_for_the_viewers_and_loads(tmp_path):
    text = write(tmp_path / "t.json", make_samples(), close=False).read_text()
    report = traceval.assert_valid(text)
    assert not report.closed and not report.trailing_comma  # valid JSON once a ] is added
    json.loads(text + "]")  # what chrome://tracing's importer does
    loaded = trace.parse(text)
    assert not loaded.complete and loaded.samples() == make_samples()


def test_counters_have_one_numeric_arg_named_by_the_catalogue(tmp_path):
    events = json.loads(write(tmp_path / "t.json", make_samples()).read_text())
    counters = [e for e in events if e["ph"] == "C"]
    for e in counters:
        ((key, value),) = e["args"].items()
        metric = e["name"].split(".")[-1]
        assert key == (metrics.metric(metric).unit or "value")
        assert isinstance(value, (int, float)) and not isinstance(value, bool)
    names = {(e["pid"], e["name"]) for e in counters}
    assert (CPU_PID, "core1.core_util_pct") in names and (CPU_PID, "cpu_util_pct") in names
    assert (trace.gpu_pid(0), "sm_active_pct") in names and (trace.gpu_pid(1), "gpu_util_pct") in names
    assert (trace.gpu_pid(1), "fan_pct") not in names  # never a value: no track, never a 0
    assert min(e["pid"] for e in events) == 10_000_000


def test_none_nan_and_bool_are_gaps_never_zero(tmp_path):
    s = make_samples(1)[0]
    from dataclasses import replace

    s = replace(s, gpus=(replace(s.gpus[0], power_w=math.nan, temp_c=math.inf, sm_active_pct=None),))
    events = json.loads(write(tmp_path / "t.json", [s]).read_text())
    names = {e["name"] for e in events if e["ph"] == "C" and e["pid"] == trace.gpu_pid(0)}
    assert not names & {"power_w", "temp_c", "sm_active_pct"}
    assert trace.load(tmp_path / "t.json").samples()[0].gpus[0].power_w is None


def test_metadata_first_with_names_and_header(tmp_path):
    events = json.loads(write(tmp_path / "t.json", make_samples()).read_text())
    first_data = next(i for i, e in enumerate(events) if e["ph"] != "M")
    assert all(e["ph"] != "M" for e in events[first_data:])
    meta = events[:first_data]
    assert meta[0]["name"] == "gputop"
    header = meta[0]["args"]
    assert header["trace_version"] == trace.TRACE_VERSION == 2 and header["gputop_version"] and header["host"]
    assert [g["name"] for g in header["gpus"]] == [H100.name, A100.name]
    named = {(e["name"], e["pid"]): e["args"] for e in meta}
    assert named[("process_name", trace.gpu_pid(1))]["name"] == "GPU 1: NVIDIA A100-SXM4-80GB"
    assert named[("process_sort_index", CPU_PID)]["sort_index"] == 0
    assert ("thread_name", trace.gpu_pid(0)) in named


def test_throttle_changes_are_instants(tmp_path):
    events = json.loads(write(tmp_path / "t.json", make_samples()).read_text())
    clocks = [e for e in events if e.get("cat") == trace.CAT_CLOCKS and e["pid"] == trace.gpu_pid(0)]
    assert [e["ph"] for e in clocks] == ["i", "i"]  # the first state, then one change
    assert clocks[1]["args"]["clock_event_reasons"] == "sw_power_cap,hw_slowdown"
    assert "power cap" in clocks[1]["name"] and clocks[1]["s"] == "t"


def _line_ends(text: str) -> list[int]:
    """Offsets just past each event's closing brace, in file order."""
    ends, pos = [], 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\n")
        if body.startswith(("[", ",")) and body.endswith("}"):
            ends.append(pos + len(body))
        pos += len(line)
    return ends


def test_a_cut_at_every_byte_loads_every_complete_event_or_says_why(tmp_path):
    # a small trace: one GPU, two samples, so every byte offset is tried in about a second
    samples = [
        Sample(
            ts_ns=T0 + i * 1000,
            gpus=(GpuSample(A100, gpu_util_pct=1.5, power_w=60.0),),
            cpu=CpuSample(1.0, (1.0,), (None,), None, 5, 10, None),
        )
        for i in range(2)
    ]
    text = write(tmp_path / "t.json", samples).read_text()
    ends = _line_ends(text)
    outcomes = {"loaded": 0, "error": 0}
    for cut in range(len(text) + 1):
        prefix = text[:cut]
        expected = sum(1 for end in ends if end <= cut)
        try:
            loaded = trace.parse(prefix, "cut.json")
        except TraceError as exc:
            assert "\n" not in str(exc)
            assert expected == 0, f"cut at {cut}: {exc}"  # only a cut inside the header may fail
            outcomes["error"] += 1
            continue
        assert len(loaded.events) == expected, cut
        got = loaded.samples()
        assert got == samples[: len(got)]
        if cut >= 1:
            report = traceval.validate(prefix)
            assert report.ok, (cut, report.problems)
        outcomes["loaded"] += 1
    assert outcomes["loaded"] > outcomes["error"] > 0
    assert trace.parse(text).samples() == samples


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "empty"),
        (b"  \n\t ", "empty"),
        (b"\x1f\x8b\x08\x00binary", "not JSON"),
        (b"hello", "not JSON"),
        (b"42", "not a trace"),
        (b'{"a": 1}', "not a trace"),
        (b"[1, 2]", "not a trace"),
        (b"[", "ends before gputop's header"),
        (b'[{"ph":"X","name":"step","pid":1,"tid":1,"ts":0,"dur":5}]', "not gputop's"),
        (b'[{"ph":"M","name":"gputop","pid":10000000,"args":{"trace_version":99}}]', "version 99"),
        (b'[{"ph":"M","name":"gputop","pid":10000000,"args":{}}]', "trace_version"),
        (b'[{"ph":"M","name":"gputop","pid":10000000,"args":{"trace_version":1,"gpus":7}}]', "GPU description"),
        (b'[{"ph":"M","name":"gputop","pid":10000000,"args":{"trace_version":1,"gpus":{"a":1}}}]', "GPU description"),
        (b'[{"ph":"M","name":"gputop","pid":10000000,"args":{"trace_version":1,"gpus":[3]}}]', "GPU description"),
        (b'[{"ph":"M","name":"x","pid":1}\n,{"ph":"C" oops}\n,{"ph":"C"}\n]', "not JSON at line 2"),
        (b'[{"ph":"M","name":"x","pid":1}]\nextra', "after the closing"),
    ],
)
def test_bad_files_give_one_clear_line(tmp_path, content, words):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(TraceError) as err:
        trace.load(path)
    message = str(err.value)
    assert words in message and "\n" not in message and str(path) in message


def test_missing_file_and_directory_are_trace_errors(tmp_path):
    with pytest.raises(TraceError, match="cannot read"):
        trace.load(tmp_path / "nope.json")
    with pytest.raises(TraceError, match="cannot read"):
        trace.load(tmp_path)


def test_object_form_with_a_gputop_header_loads(tmp_path):
    text = write(tmp_path / "t.json", make_samples()).read_text()
    doc = '{"displayTimeUnit": "ms", "traceEvents": ' + text.strip() + "}"
    assert trace.parse(doc).samples() == make_samples()


def test_writer_refuses_an_existing_file_unless_forced(tmp_path):
    path = tmp_path / "t.json"
    path.write_text("keep me")
    with pytest.raises(FileExistsError):
        TraceWriter.create(str(path))
    assert path.read_text() == "keep me"
    writer = TraceWriter.create(str(path), force=True)
    writer.write_sample(make_samples(1)[0])
    writer.close()
    writer.close()  # idempotent
    assert trace.load(path).samples() == make_samples(1)


def test_a_writer_closed_before_any_sample_leaves_an_empty_file(tmp_path):
    path = tmp_path / "t.json"
    TraceWriter.create(str(path)).close()
    assert path.read_bytes() == b""
    with pytest.raises(TraceError, match="empty"):
        trace.load(path)


def test_fixture_recorded_with_the_fake_h100_loads_and_validates():
    text = (DATA / "h100_fake.json").read_text()
    traceval.assert_valid(text, strict=True)
    loaded = trace.load(DATA / "h100_fake.json")
    samples = loaded.samples()
    assert len(samples) >= 5 and loaded.gpus[0].sm_count == 132
    assert all(s.gpus[0].sm_active_pct is not None for s in samples[1:])  # GPM from the 2nd tick
    assert samples[0].gpus[0].fan_pct is None  # datacentre board: no fan, n/a in the trace too


def test_validator_catches_what_perfetto_rejects():
    bad = (
        '[{"ph":"C","name":"x","pid":0,"tid":0,"ts":1,"args":{"a":1,"b":2}}\n'
        ',{"ph":"C","name":"y","pid":5,"tid":5,"ts":"soon","args":{"a":1}}\n'
        ',{"ph":"C","name":"z","pid":5,"tid":5,"ts":2,"args":{"a":"high"}}\n'
        ',{"ph":"X","name":"a","pid":5,"tid":5,"ts":0,"dur":10}\n'
        ',{"ph":"X","name":"b","pid":5,"tid":5,"ts":5,"dur":10}\n'
        ',{"ph":"M","name":"process_name","pid":5,"args":{"name":"late"}}\n]'
    )
    problems = "\n".join(traceval.validate(bad).problems)
    for words in ("pid 0", "not one key", "ts 'soon'", "not a number", "without nesting", "after data events"):
        assert words in problems
    nested = '[{"ph":"X","name":"a","pid":5,"tid":5,"ts":0,"dur":10}\n,{"ph":"X","name":"b","pid":5,"tid":5,"ts":2,"dur":3},\n'
    report = traceval.validate(nested)
    assert report.ok and report.trailing_comma and not report.closed


def test_dumps_event_writes_loaded_numbers_back_exactly():
    from gputop.trace import dumps_event, parse

    text = (
        '[{"ph":"M","name":"gputop","pid":10000000,"tid":10000000,"args":{"trace_version":1}}\n'
        ',{"ph":"C","name":"x","pid":10000000,"tid":10000000,"ts":1795488922232495.123,"args":{"%":0.1}}\n]'
    )
    event = parse(text).events[1]
    assert dumps_event(event) == '{"ph":"C","name":"x","pid":10000000,"tid":10000000,"ts":1795488922232495.123,"args":{"%":0.1}}'
