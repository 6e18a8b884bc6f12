"""The hooks gputop arms in a launched Python script, to see its training steps with no change to
it. Runs *inside the child*, imported by this directory's ``sitecustomize``; standard library only.

Nothing happens unless the script imports torch. Then, at the end of torch's own import:

- a global optimizer step post-hook: one step each time the *lead* optimizer steps (the first to
  step; with several optimizers stepping per iteration, a GAN's, one step per iteration). An
  optimizer that steps twice while the lead does not becomes the lead (an optimizer re-created
  each epoch). A step pre-hook marks the time inside ``Optimizer.step``, so the ``backward`` calls
  of an LBFGS closure are not steps;
- ``torch.autograd.backward`` (which ``Tensor.backward`` calls) wrapped: where the script never
  built an optimizer (hand-written updates), each backward outside an optimizer step is a step;
- the DataLoader iterator's ``__next__`` wrapped: the time it takes is the step's data wait, and
  the first tensor of the batch gives its batch size, where it can be seen.

A step spans from the previous step's end (the first: from the first batch fetched or backward
called) to the lead optimizer's post-hook (or the backward's return). The hooks read clocks and
shapes only: they never synchronize a device, read a tensor's value, or change what the job
computes, its argv, ``__main__``, signals, stdout or exit code. Step events (one line each, with
``"source": "auto"``) go to the events pipe (``GPUTOP_EVENTS_FD``) in one ``os.write`` at most
every FLUSH_S (and at exit): a write per step would wake gputop's reader thread at every step,
which on a small machine costs the job more than the hooks themselves. A process forked
from the script (DataLoader workers, multiprocessing) turns the hooks off in itself; a spawned one
never arms them (``GPUTOP_AUTOSTEP`` is taken out of the environment by the process that arms).
"""

from __future__ import annotations

import functools
import os
import stat
import sys
import time
from typing import Any, Callable

ENV_TOKEN = "GPUTOP_AUTOSTEP"  # set by gputop's launcher for the one process to instrument
ENV_FD = "GPUTOP_EVENTS_FD"  # gputop.workloads.events.ENV_FD (this module imports nothing of gputop)
MAX_WAITS = 8  # data waits a step lists one by one (its data_wait_s sums them all)
FLUSH_S = 0.1  # step events are held at most this long before they are written
FLUSH_LINES = 512  # ... or this many

_now = time.time_ns
FLUSH_NS = int(FLUSH_S * 1e9)
_PIPE_BUF = 4096


class _State:
    """Everything the hooks share, in one object (attribute reads are the hot path)."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd
        self.step = 0
        self.begin_ns: int | None = None  # when the step under way began
        self.in_step = 0  # inside Optimizer.step (an LBFGS closure's backward is no step)
        self.has_optimizer = False
        self.lead: int | None = None  # id() of the lead optimizer
        self.others: dict[int, int] = {}  # other optimizers' first step since the lead's last
        self.loader = False  # a DataLoader iterator has been seen: data_wait_s is a measurement
        self.wait_ns = 0
        self.waits: list[str] = []  # "[begin_ns,dur_ns]" of this step's waits
        self.samples = 0
        self.samples_known = True
        self.batch_size: int | None = None
        self.device: str | None = None
        self.started = False
        self.held: list[str] = []  # lines not yet written
        self.written_ns = 0  # when they were last written


_state: _State | None = None


def events_fd(env: dict[str, str] | os._Environ[str]) -> int | None:
    """The events pipe the launcher left open, or None (not a pipe: not ours)."""
    try:
        fd = int(env.get(ENV_FD, ""))
        return fd if stat.S_ISFIFO(os.fstat(fd).st_mode) else None
    except (ValueError, OSError, OverflowError):
        return None


def arm() -> bool:
    """Called by sitecustomize: take the token, and hook torch when (if ever) it is imported."""
    global _state
    if os.environ.pop(ENV_TOKEN, None) is None:
        return False
    fd = events_fd(os.environ)
    if fd is None:
        return False
    _state = _State(fd)
    os.register_at_fork(after_in_child=_off)
    import atexit

    atexit.register(_flush)
    torch = sys.modules.get("torch")
    if torch is not None:
        _install(torch)
    else:
        sys.meta_path.insert(0, _TorchFinder())
    return True


def _off() -> None:
    """In a forked child: report nothing (its parent is the job)."""
    if _state is not None:
        _state.fd = None
        _state.held = []


def _flush() -> None:
    if _state is not None and _state.held:
        _write(_state)


class _TorchFinder:
    """A meta path finder that answers only for ``torch``, finds it with the finders after it,
    and runs ``_install`` once torch's own import has finished."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> Any:
        if name != "torch":
            return None
        import importlib.util

        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec("torch")
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            del loader.exec_module  # the loader as it was
            try:
                _install(module)
            except Exception:  # noqa: BLE001 - an odd torch (no global step hooks: < 2.0) is left alone
                pass

        loader.exec_module = exec_module
        return spec


def _install(torch: Any) -> None:
    state = _state
    if state is None:
        return
    import importlib

    try:  # imported by torch's own __init__ already: these cost nothing
        optimizer = importlib.import_module("torch.optim.optimizer")
        dataloader = importlib.import_module("torch.utils.data.dataloader")
        autograd = torch.autograd
    except (ImportError, AttributeError):  # an odd torch: leave it alone
        return
    optimizer.register_optimizer_step_pre_hook(_pre)
    optimizer.register_optimizer_step_post_hook(_post)
    init = optimizer.Optimizer.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        state.has_optimizer = True
        init(self, *args, **kwargs)

    optimizer.Optimizer.__init__ = __init__
    autograd.backward = _backward(autograd.backward)
    iterator = dataloader._BaseDataLoaderIter
    iterator.__next__ = _next(iterator.__next__)


def _pre(opt: Any, args: Any, kwargs: Any) -> None:
    state = _state
    if state is not None:
        state.in_step += 1


def _post(opt: Any, args: Any, kwargs: Any) -> None:
    state = _state
    if state is None:
        return
    state.in_step = max(0, state.in_step - 1)
    if state.fd is None:
        return
    now = _now()
    key = id(opt)
    if key == state.lead or state.lead is None:
        if state.lead is None:
            state.device = _device_of_optimizer(opt)
        state.lead = key
        if state.others:
            state.others.clear()
        _emit(state, now)
        return
    first = state.others.get(key)
    if first is None:
        state.others[key] = now
    else:  # the lead no longer steps (or steps less often): this one leads from here
        state.lead = key
        state.others.clear()
        _emit(state, first)
        _emit(state, now)


def _backward(backward: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(backward)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = _state
        if state is not None and state.begin_ns is None:
            state.begin_ns = _now()
        out = backward(*args, **kwargs)
        if state is not None and state.fd is not None and not state.has_optimizer and not state.in_step:
            if state.device is None and args:
                state.device = _device_of(args[0])
            _emit(state, _now())
        return out
    return wrapper


def _next(next_: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(next_)
    def __next__(self: Any) -> Any:
        state = _state
        t0 = _now()
        try:
            batch = next_(self)
        finally:
            if state is not None:
                t1 = _now()
                if state.begin_ns is None:
                    state.begin_ns = t0
                state.loader = True
                state.wait_ns += t1 - t0
                if len(state.waits) < MAX_WAITS:
                    state.waits.append(f"[{t0},{t1 - t0}]")
        if state is not None:
            n = _batch_size(batch)
            if n is None:
                state.samples_known = False
            else:
                state.samples += n
                if state.batch_size is None:
                    state.batch_size = n
        return batch
    return __next__


def _batch_size(batch: Any) -> int | None:
    """The first dimension of the batch's first tensor (a tensor, or the first item of a tuple,
    list or dict, two levels down at most); None where there is none to see."""
    for _ in range(3):
        shape = getattr(batch, "shape", None)
        if shape is not None:
            return int(shape[0]) if len(shape) else None
        if isinstance(batch, (list, tuple)) and batch:
            batch = batch[0]
        elif isinstance(batch, dict) and batch:
            batch = next(iter(batch.values()))
        else:
            return None
    return None


def _device_of(tensor: Any) -> str | None:
    device = getattr(tensor, "device", None)
    return None if device is None else str(device)


def _device_of_optimizer(opt: Any) -> str | None:
    try:
        return _device_of(opt.param_groups[0]["params"][0])
    except (AttributeError, IndexError, KeyError, TypeError):
        return None


def _emit(state: _State, end_ns: int) -> None:
    if not state.started:
        state.started = True
        _start(state, end_ns)
    begin = state.begin_ns if state.begin_ns is not None else end_ns
    state.begin_ns = end_ns
    state.step += 1
    wall = max(0, end_ns - begin) / 1e9
    samples = str(state.samples) if state.samples_known and state.samples else "null"
    wait = ""
    if state.loader:
        wait = f',"data_wait_s":{state.wait_ns / 1e9!r},"waits":[{",".join(state.waits)}]'
        state.wait_ns = 0
        state.waits.clear()
    state.samples, state.samples_known = 0, True
    state.held.append(f'{{"event":"step","step":{state.step},"samples":{samples},"loss":null,'
                      f'"wall_s":{wall!r},"ts_ns":{end_ns},"source":"auto"{wait}}}\n')
    if end_ns - state.written_ns >= FLUSH_NS or len(state.held) >= FLUSH_LINES:
        state.written_ns = end_ns
        _write(state)


def _start(state: _State, ts_ns: int) -> None:
    device = state.device
    fields = [f'"pid":{os.getpid()}']
    if device is not None:
        fields.append(f'"device":"{_plain(device)}"')
        if device.startswith("cuda"):
            fields += _cuda_facts(device)
    if state.batch_size is not None:
        fields.append(f'"batch_size":{state.batch_size}')
    state.held.append(f'{{"event":"start","source":"auto",{",".join(fields)},"ts_ns":{ts_ns}}}\n')


def _cuda_facts(device: str) -> list[str]:
    """The CUDA device's name and UUID (queries of its properties: no synchronization)."""
    cuda = getattr(sys.modules.get("torch"), "cuda", None)
    try:
        index = int(device.partition(":")[2] or cuda.current_device())  # type: ignore[union-attr]
        props = cuda.get_device_properties(index)  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - a fact we cannot read is left out
        return []
    out = [f'"device_name":"{_plain(str(props.name))}"']
    uuid = getattr(props, "uuid", None)
    if uuid is not None:
        out.append(f'"device_uuid":"{_plain(str(uuid))}"')
    return out


def _plain(text: str) -> str:
    return "".join(c for c in text if c not in '"\\' and c.isprintable())


def _write(state: _State) -> None:
    """The held lines, in whole lines (a pipe takes up to PIPE_BUF bytes at once unsplit)."""
    fd, data = state.fd, "".join(state.held).encode()
    state.held = []
    if fd is None:
        return
    try:
        while data:
            cut = data.rfind(b"\n", 0, _PIPE_BUF) + 1 if len(data) > _PIPE_BUF else len(data)
            written = os.write(fd, data[:cut or len(data)])
            data = data[written:]
    except OSError:  # the reader has gone: carry on without it
        state.fd = None
