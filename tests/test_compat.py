"""The contract with Textual's privates (gputop.tui.compat.PRIVATES): each is in the installed
Textual, as read. Fast, and without a terminal: after a Textual upgrade this names what moved."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import signal
import sys

import pytest
from textual.app import App
from textual.reactive import Reactive

from gputop.tui import compat
from gputop.tui.compat import PRIVATES, Private

pytestmark = pytest.mark.unit


def _owner(where: str) -> object:
    module, _, name = where.partition(":")
    found: object = importlib.import_module(module)
    return getattr(found, name) if name else found


def _driver() -> object:
    """A LinuxDriver as Textual makes one (it needs a running loop; its signal handlers put back)."""
    from textual.drivers.linux_driver import LinuxDriver

    async def make() -> object:
        return LinuxDriver(App(), debug=False, mouse=False, size=(80, 24))

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTSTP, signal.SIGCONT)}
    try:
        return asyncio.run(make())
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _instance(where: str) -> object:
    """An object of the class at ``where``, for the attributes its __init__ sets."""
    cls = _owner(where)
    if where in ("textual.drivers.linux_driver:LinuxDriver", "textual.driver:Driver"):
        return _driver()
    if where == "textual.widgets._footer:FooterKey":
        return cls("q", "q", "quit", "quit")  # type: ignore[operator]
    return cls()  # type: ignore[operator]


def _there(private: Private) -> bool:
    owner = _owner(private.where)
    if private.name.startswith("-"):  # a class name Textual's source gives a widget
        return f'"{private.name}"' in inspect.getsource(owner)  # type: ignore[arg-type]
    if private.params is not None:  # a method, with the parameters read
        method = getattr(owner, private.name, None)
        if not callable(method):
            return False
        params = tuple(p for p in inspect.signature(method).parameters if p != "self")
        return params == private.params
    if hasattr(owner, private.name):
        return True
    return inspect.isclass(owner) and hasattr(_instance(private.where), private.name)


@pytest.mark.parametrize("private", PRIVATES, ids=[f"{p.where}.{p.name}" for p in PRIVATES])
def test_each_private_gputop_uses_is_in_this_textual(private):
    moved = f"Textual's {private.where}.{private.name} moved or changed: gputop relies on it as {private.relies!r} (gputop/tui/compat.py)"
    assert _there(private), moved


def test_the_footer_keys_compact_state_is_a_reactive():
    from textual.widgets._footer import FooterKey

    assert isinstance(FooterKey.compact, Reactive), "FooterKey.compact is no longer a Reactive (compat.born_compact)"


def test_every_private_name_in_gputop_is_in_the_table():
    """A private of Textual's (or Rich's) used elsewhere under gputop/ would escape this contract:
    no private module anywhere, and none of the names above in a module that imports Textual."""
    from pathlib import Path

    import gputop

    root = Path(inspect.getfile(gputop)).parent
    for path in root.rglob("*.py"):
        if path.name == "compat.py" and path.parent.name == "tui":
            continue
        text = path.read_text(encoding="utf-8")
        for private in ("from textual._", "import textual._", "from rich._", "import rich._"):
            assert private not in text, f"{path} imports a private module outside gputop/tui/compat.py"
        if "from textual" not in text and "import textual" not in text:
            continue  # (its own underscore names: a trace file's _file)
        for private in PRIVATES:
            if private.name.startswith("_"):
                assert f".{private.name}" not in text, f"{path} uses Textual's {private.name} outside gputop/tui/compat.py"


def test_a_missing_private_is_named_loudly():
    class Bare:
        pass

    with pytest.raises(compat.CompatError, match=r"Textual's _file, _writer_thread,.*Textual 8\.2"):
        compat.require(Bare(), "_file", "_writer_thread")
    compat.require(sys, "modules")  # (there: nothing raised)
