"""Make a long recording from a real one: its samples repeated, each copy's timestamps shifted
past the one before, until the file reaches a size (for benchmarks/streaming.py; write it in
/tmp, never commit it).

    python benchmarks/long_trace.py SOURCE.json OUT.json --mb 300
    python benchmarks/long_trace.py --torch tests/data/torch_cpu_profile.json OUT.json --mb 100

Every line is the real recorder's (the header and metadata once, then the body again and again);
only ``ts`` changes, so the readers see the shape and density of a real 100 Hz recording.
``--torch``: a torch.profiler trace the same way (``build_torch``): its metadata once, its other
events again and again with ``ts`` shifted, laid out as the profiler lays it out (indented).
"""

from __future__ import annotations

import argparse
import json
import re

_TS = re.compile(rb'"ts":(\d+)\.(\d{3})')


def build(source: str, out: str, target_bytes: int) -> int:
    with open(source, "rb") as f:
        lines = f.readlines()
    head = [ln for ln in lines if ln.startswith((b"[", b',{"ph":"M"'))]
    body = [ln for ln in lines if ln not in head and ln.strip() not in (b"]", b"")]
    text = b"".join(body)
    parts = _TS.split(text)  # text, whole, frac, text, whole, frac, ...
    stamps = [int(parts[i]) * 1000 + int(parts[i + 1]) for i in range(1, len(parts), 3)]
    span = max(stamps) - min(stamps) + 10_000_000  # the next copy starts 10 ms after the last
    written = 0
    with open(out, "wb") as f:
        for line in head:
            f.write(line)
            written += len(line)
        copy = 0
        while written < target_bytes:
            shift = copy * span
            chunks = []
            for i in range(0, len(parts) - 1, 3):
                ns = int(parts[i + 1]) * 1000 + int(parts[i + 2]) + shift
                chunks.append(parts[i])
                chunks.append(b'"ts":%d.%03d' % (ns // 1000, ns % 1000))
            chunks.append(parts[-1])
            data = b"".join(chunks)
            f.write(data)
            written += len(data)
            copy += 1
        f.write(b"]\n")
    return written


def build_torch(source: str, out: str, target_bytes: int) -> int:
    """A profiler trace of ``target_bytes`` or so from a real one (``build``'s twin)."""
    with open(source, "rb") as f:
        doc = json.loads(f.read())
    events = doc["traceEvents"]
    meta = [e for e in events if e.get("ph") == "M"]
    body = [e for e in events if e.get("ph") != "M"]
    stamps = [e["ts"] for e in body if isinstance(e.get("ts"), (int, float))]
    span = max(stamps) - min(stamps) + 10.0  # microseconds: the next copy 10 us after the last
    written = 0
    with open(out, "w", encoding="utf-8") as f:
        keys = list(doc)
        at = keys.index("traceEvents")  # the other keys where the profiler put them, before and after
        f.write("{\n")
        for key in keys[:at]:
            f.write(f'  "{key}": {json.dumps(doc[key])},\n')
        f.write('  "traceEvents": [\n')
        first = True
        copy = 0
        while first or written < target_bytes:
            for event in (meta if first else []) + body:
                if copy and isinstance(event.get("ts"), (int, float)):
                    event = {**event, "ts": round(event["ts"] + copy * span, 3)}
                text = ("" if first else ",\n") + json.dumps(event, indent=2)
                first = False
                f.write(text)
                written += len(text)
            copy += 1
        f.write("\n  ]" + "".join(f',\n  "{key}": {json.dumps(doc[key])}' for key in keys[at + 1 :]) + "\n}\n")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", action="store_true", help="SOURCE is a torch.profiler trace")
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--mb", type=float, default=300.0, help="size to reach, in MB (1e6 bytes)")
    args = parser.parse_args()
    size = (build_torch if args.torch else build)(args.source, args.out, int(args.mb * 1e6))
    print(f"{args.out}: {size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
