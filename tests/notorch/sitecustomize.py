"""Loaded at start-up when tests/notorch leads PYTHONPATH (subprocess tests only): this Python
behaves as one without PyTorch installed (``import torch`` raises ModuleNotFoundError), and then
loads tests/sitecustom's hook (the NVML fake) as usual."""

import importlib.abc
import os
import sys


class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoTorch())

if os.environ.get("GPUTOP_FAKE_NVML"):
    import fakenvml

    fakenvml.install_from_spec(os.environ["GPUTOP_FAKE_NVML"])
