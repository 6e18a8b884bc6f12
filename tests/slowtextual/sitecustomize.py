"""Test aid (tests/test_firstframe.py): ``import textual`` takes SLOW_TEXTUAL_S seconds longer, so
that what gputop draws before it stays alone on the screen long enough to be read. Then the NVML
fake's sitecustomize (tests/sitecustom) runs as usual."""

import importlib.abc
import os
import runpy
import sys
import time


class _SlowTextual(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "textual":
            sys.meta_path.remove(self)
            time.sleep(float(os.environ.get("SLOW_TEXTUAL_S", "2")))
        return None


sys.meta_path.insert(0, _SlowTextual())
runpy.run_path(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sitecustom", "sitecustomize.py"))
