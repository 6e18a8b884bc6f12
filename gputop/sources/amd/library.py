"""amdsmi imported once, quietly, and the one choke point every amdsmi call goes through.

``import amdsmi`` loads ``libamd_smi.so`` at import time; where ROCm is absent it prints to
stdout and raises (a KeyError from deep inside its wrapper). It is imported here with stdout
captured (never onto the live view's screen) and what it printed is logged. The amdsmi package the
user's ROCm ships (``$ROCM_PATH/share/amd_smi``, default /opt/rocm) is preferred to the one
installed from PyPI: the PyPI wrapper is generated for one library version.

amdsmi 7.0.2's traps, as met here: a value that is "not available" is all ones of its field's
width (the wrapper turns some into the string "N/A", not all: an unsigned 32-bit activity of
0xFFFFFFFF passes through); ``amdsmi_status_code_to_string`` raises TypeError (so errors are
worded here from the status code); ``amdsmi_get_lib_version()["build"]`` is one character.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from types import ModuleType
from typing import Any, Callable

from gputop.sources.gpu import DriverTime

log = logging.getLogger("gputop.sources.amd")
DRIVER_TIME = DriverTime()  # this process's time in amdsmi calls made through ``query``

# amdsmi_status_t codes (amdsmi_wrapper.amdsmi_status_t__enumvalues) that mean "this device or
# driver can't answer that": None, never 0
STATUS_NOT_SUPPORTED = 2
STATUS_NOT_YET_IMPLEMENTED = 3
STATUS_NO_PERM = 10
STATUS_NOT_FOUND = 31
STATUS_NO_DATA = 40
STATUS_DRIVER_NOT_LOADED = 34
STATUS_INIT_ERROR = 18
STATUS_NOT_INIT = 32
_STATUS_WORDS = {
    STATUS_DRIVER_NOT_LOADED: "amdgpu driver not loaded",
    STATUS_NO_PERM: "no permission to open the amdgpu driver",
    STATUS_INIT_ERROR: "amdsmi failed to start",
    STATUS_NOT_INIT: "amdsmi failed to start",
    4: "amdsmi could not load a module it needs",
    5: "libamd_smi.so lacks a symbol the amdsmi package asks for (versions differ?)",
}


class AmdUnavailable(Exception):
    """No AMD GPU can be shown; ``reason`` is one line; ``library_found``: ROCm's library loaded
    (so the reason is worth showing on a machine that also has NVIDIA's)."""

    def __init__(self, reason: str, library_found: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.library_found = library_found


def rocm_package_dir(env: dict[str, str] | None = None) -> str | None:
    """The amdsmi package directory the ROCm install ships, where there is one."""
    env = dict(os.environ) if env is None else env
    root = env.get("ROCM_PATH") or env.get("ROCM_HOME") or "/opt/rocm"
    folder = os.path.join(root, "share", "amd_smi")
    return folder if os.path.isfile(os.path.join(folder, "amdsmi", "__init__.py")) else None


def import_amdsmi() -> ModuleType:
    """amdsmi, imported with its stdout captured; AmdUnavailable says why not."""
    loaded = sys.modules.get("amdsmi")
    if loaded is not None:
        return loaded
    folder = rocm_package_dir()
    if folder is not None and folder not in sys.path:
        sys.path.insert(0, folder)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            import amdsmi as module
    except ModuleNotFoundError:
        raise AmdUnavailable("the amdsmi package is not installed (pip install amdsmi, or ROCm's own)", False) from None
    except Exception as err:  # no libamd_smi.so: the wrapper printed why, then failed on it
        said = " ".join(printed.getvalue().split())
        log.debug("import amdsmi failed (%s: %s); it printed: %s", type(err).__name__, err, said)
        raise AmdUnavailable("libamd_smi.so not found (ROCm's amd-smi-lib not installed)", False) from None
    finally:
        if folder is not None:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)
    if printed.getvalue().strip():
        log.debug("import amdsmi printed: %s", " ".join(printed.getvalue().split()))
    found: ModuleType = module
    return found


def package(amdsmi: ModuleType) -> str:
    """Which amdsmi package is in use: its folder and version (for --debug)."""
    from importlib import metadata

    version = getattr(amdsmi, "__version__", None)
    if not version:
        try:
            version = metadata.version("amdsmi")
        except metadata.PackageNotFoundError:
            version = "unknown"
    return f"{os.path.dirname(getattr(amdsmi, '__file__', None) or '?')} (version {version})"


def status_of(err: BaseException) -> int | None:
    """The amdsmi_status_t code of an amdsmi library error; None for any other exception."""
    code = getattr(err, "get_error_code", None)
    if code is None:
        return None
    try:
        value = code()
    except Exception:
        return None
    return value if isinstance(value, int) else None


def reason(err: BaseException) -> str:
    """One line for the user from an error amdsmi raised."""
    status = status_of(err)
    if status is None:
        return f"amdsmi failed: {type(err).__name__}"
    return _STATUS_WORDS.get(status, f"amdsmi failed (status {status})")


def query(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, or None where amdsmi says no (not supported, no data, any library error):
    a value the driver does not give is n/a, never 0."""
    try:
        return DRIVER_TIME.call(fn, *args)
    except Exception as err:  # AmdSmiLibraryException and its kin; a wrapper's own TypeError too
        if status_of(err) is None:
            log.debug("%s raised %s: %s", getattr(fn, "__name__", fn), type(err).__name__, err)
        return None


def known(value: Any, bits: int) -> int | None:
    """An unsigned field's value, None where it is the wrapper's "N/A" or all ones of its width."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    if value < 0 or value >= (1 << bits) - 1:
        return None
    return value
