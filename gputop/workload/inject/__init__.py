"""The directory gputop puts first on a launched Python script's PYTHONPATH: its
``sitecustomize`` arms the torch hooks of ``_gputop_autostep`` in the child (see there). gputop
itself never imports these modules; it only names the directory (``DIR``) and the token."""

from __future__ import annotations

import os

DIR = os.path.dirname(os.path.abspath(__file__))
ENV_TOKEN = "GPUTOP_AUTOSTEP"  # _gputop_autostep.ENV_TOKEN: the process to instrument


def environment(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a child to instrument: this directory first on PYTHONPATH, and the token."""
    out = dict(env)
    path = out.get("PYTHONPATH")
    out["PYTHONPATH"] = DIR if not path else DIR + os.pathsep + path
    out[ENV_TOKEN] = "1"
    return out
