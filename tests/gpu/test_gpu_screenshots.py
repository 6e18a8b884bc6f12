"""On a real GPU: the live view beside matmul bf16, drawn by the app itself over the sampler
`gputop` builds (tests/gpu/screenshot.py; screenshots/make.py draws only the fake), saved as SVG
at 160x50 and 80x24."""

from __future__ import annotations

import re
import socket
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.gpu]  # on the real hardware: never in the fast loop


def test_the_live_view_beside_a_workload_on_this_gpu(runner, figure):
    folder = runner.out / "screenshots"
    proc = runner.run(
        "screenshots",
        [
            sys.executable,
            str(Path(__file__).with_name("screenshot.py")),
            "--out",
            str(folder),
            "--seconds",
            "20",
            "--max-wait",
            "60",
            "--title",
            "beside matmul bf16 (real hardware)",
            "--host",
            socket.gethostname(),
            "--run",
            "matmul",
            "--",
            "--device",
            "cuda",
            "--precision",
            "bf16",
            "--steps",
            "1000000",
        ],
        timeout=90,
    )
    assert proc.ok, proc.why()
    import pynvml

    pynvml.nvmlInit()
    try:
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
    finally:
        pynvml.nvmlShutdown()
    name = name.decode() if isinstance(name, bytes) else name
    token = next((t for t in name.split() if re.search(r"\d", t)), name)  # "H100", "H200"
    shots = sorted(folder.glob("*.svg"))
    assert [p.name for p in shots] == ["workload-160x50.svg", "workload-80x24.svg"]
    for svg in shots:
        text = svg.read_text(errors="replace")
        figure(svg.name, f"{svg.stat().st_size // 1024} KiB, shows {token}: {token in text}", "> 10 KiB, shows the GPU")
        assert svg.stat().st_size > 10_000 and token in text
