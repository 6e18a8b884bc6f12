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
  each step says its time inside backward (``backward_s``: in DDP on gloo that holds the rank's
  wait for the others' gradients, which is how gputop tells which rank the others wait for);
- the DataLoader iterator's ``__next__`` wrapped: the time it takes is the step's data wait, and
  the first tensor of the batch gives its batch size, where it can be seen.

A step spans from the previous step's end (the first: from the first batch fetched or backward
called) to the lead optimizer's post-hook (or the backward's return). The hooks read clocks and
shapes only: they never synchronize a device, read a tensor's value, or change what the job
computes, its argv, ``__main__``, signals, stdout or exit code. Step events (one line each, with
``"source": "auto"``) are held, and a daemon thread of the hooks' own (started at the first step)
writes what is held every FLUSH_S (and at exit) to the events pipe (``GPUTOP_EVENTS_FD``) in one
``os.write``: a write per step would wake gputop's reader thread at every step, which on a small
machine costs the job more than the hooks themselves, and a write on the step path would hold the
step up whenever the pipe is full; a rank that stops stepping (a hang, a stall) has its last steps
written all the same. That thread also reads, every MEMORY_EVERY_S, the CUDA caching allocator's
retry count (``torch.cuda.memory_stats(device)["num_alloc_retries"]``, public) of the step's
device, only where ``torch.cuda.is_initialized()`` already (it never initialises CUDA, never
synchronizes); the steps after carry it (``alloc_retries``), and none does on the CPU.

Every process of the job is reached: ``GPUTOP_AUTOSTEP`` and this directory on ``PYTHONPATH``
stay in the environment, so a launcher's ranks (torchrun, ``mp.spawn``) arm the same lazy hooks.
The first process (token "1") writes to the events pipe and passes the token on as "descendant";
the others connect to gputop's socket (``GPUTOP_EVENTS_SOCK``) at their first step (a launcher may
close inherited descriptors). A forked process (DataLoader workers) goes silent, and becomes a rank
of its own when it calls ``init_process_group``; a DataLoader worker never steps, and says nothing.
Each process's first event is a ``hello`` (pid, ppid, rank, local rank, world size, group rank from
the environment or ``torch.distributed`` once initialised, no collective; the elastic run id and
restart count; device and GPU UUID); a rank's steps (any but the first process's) carry pid and rank.

Requests from gputop (the last section) come back on a process's socket connection: a thread of
the hooks' own reads them and answers ``stacks`` with every thread's Python stack
(``sys._current_frames``), on a new connection to the path the request names. No signal handler,
no collective: a process whose every thread holds the GIL in native code does not answer. The
first process (a single-process script, torchrun's agent, ``mp.spawn``'s parent, accelerate's
CLI), whose events go by the pipe, connects too once it imports torch, for requests alone, so it
answers as well (``"root": true``). A forked child closes its copy of its parent's connection
(the requests thread does not survive a fork); a DataLoader worker is never asked: a forked one
has no thread to answer with, and starting a connection and a thread in each worker (forked from
a threaded parent) is not worth its risk for a process that runs the dataset's code only.
"""

from __future__ import annotations

import collections
import functools
import os
import socket
import stat
import sys
import threading
import time
from typing import Any, Callable

ENV_TOKEN = "GPUTOP_AUTOSTEP"  # "1": set by gputop's launcher for the first process; DESCENDANT after
ENV_FD = "GPUTOP_EVENTS_FD"  # gputop.workloads.events.ENV_FD (this module imports nothing of gputop)
ENV_SOCK = "GPUTOP_EVENTS_SOCK"  # gputop.workload.channel.ENV_SOCK: the socket every process can open
DESCENDANT = "descendant"
IDENTITY_ENV = (
    ("rank", "RANK"),
    ("local_rank", "LOCAL_RANK"),
    ("world_size", "WORLD_SIZE"),  # torchrun's
    ("group_rank", "GROUP_RANK"),
    ("restart_count", "TORCHELASTIC_RESTART_COUNT"),
)
MAX_WAITS = 8  # data waits a step lists one by one (its data_wait_s sums them all)
FLUSH_S = 0.1  # step events are held at most this long before they are written
MEMORY_EVERY_S = 1.0  # the CUDA allocator's retry count is read this often (by the writer thread)

_now = time.time_ns
_PIPE_BUF = 4096


class _State:
    """Everything the hooks share, in one object (attribute reads are the hot path)."""

    def __init__(self, fd: int | None, sock_path: str | None, root: bool) -> None:
        self.fd: int | None = fd  # the events pipe (the first process), else None
        self.sock_path = sock_path  # the socket connected to at the first write (the others)
        self.conn: socket.socket | None = None
        self.root = root
        self.off = False  # silent: forked, a DataLoader worker, or the reader has gone
        self.tag = ""  # ',"pid":..,"rank":..' on each step line (a rank's, or not the first process's)
        self.step = 0
        self.begin_ns: int | None = None  # when the step under way began
        self.in_step = 0  # inside Optimizer.step (an LBFGS closure's backward is no step)
        self.has_optimizer = False
        self.lead: int | None = None  # id() of the lead optimizer
        self.others: dict[int, int] = {}  # other optimizers' first step since the lead's last
        self.loader = False  # a DataLoader iterator has been seen: data_wait_s is a measurement
        self.wait_ns = 0
        self.waits: list[str] = []  # "[begin_ns,dur_ns]" of this step's waits
        self.backward_ns = 0  # this step's time inside autograd's backward (DDP on gloo: its wait too)
        self.samples = 0
        self.samples_known = True
        self.batch_size: int | None = None
        self.device: str | None = None
        self.alloc_retries: int | None = None  # the CUDA caching allocator's retries so far, where read
        self.started = False
        self.held: collections.deque[str] = collections.deque()  # lines not yet written (appended by the
        # hooks, taken by the writer: deque's append and popleft are atomic)
        self.writing = threading.Lock()  # one writer at a time (the flushing thread, exit)
        self.flusher: threading.Thread | None = None


_state: _State | None = None


def events_fd(env: dict[str, str] | os._Environ[str]) -> int | None:
    """The events pipe the launcher left open, or None (not a pipe: not ours)."""
    try:
        fd = int(env.get(ENV_FD, ""))
        return fd if stat.S_ISFIFO(os.fstat(fd).st_mode) else None
    except (ValueError, OSError, OverflowError):
        return None


def arm() -> bool:
    """Called by sitecustomize: read the token (the first process passes it on as DESCENDANT), and
    hook torch when (if ever) it is imported."""
    global _state
    token = os.environ.get(ENV_TOKEN)
    if token is None:
        return False
    root = token != DESCENDANT
    if root:
        os.environ[ENV_TOKEN] = DESCENDANT
    fd = events_fd(os.environ) if root else None
    sock_path = os.environ.get(ENV_SOCK) or None
    if fd is None and sock_path is None:
        return False
    _state = _State(fd, sock_path, root)
    os.register_at_fork(after_in_child=_off)
    import atexit

    atexit.register(_bye)
    torch = sys.modules.get("torch")
    if torch is not None:
        _install(torch)
    else:
        sys.meta_path.insert(0, _TorchFinder())
    return True


def _off() -> None:
    """In a forked child: report nothing (its parent is the job), unless it joins a process group.
    The parent's connection is closed here (its requests thread is not: threads do not survive a
    fork), so that the parent's ending closes it for gputop."""
    if _state is not None:
        if _state.conn is not None:
            try:
                _state.conn.close()
            except OSError:
                pass
        _state.fd, _state.conn, _state.off = None, None, True
        _state.held.clear()
        _state.writing, _state.flusher = threading.Lock(), None  # the parent's writer is not here


def _init_process_group(init: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.distributed.init_process_group``, after which a forked process is a rank of its own."""

    @functools.wraps(init)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global _state
        out = init(*args, **kwargs)
        state = _state
        if state is not None and state.off and state.sock_path and state.fd is None and state.conn is None:
            _state = _State(None, state.sock_path, root=False)
            _state.has_optimizer = state.has_optimizer  # one built before the fork still steps
            util = sys.modules.get("multiprocessing.util")  # a forked Process ends in os._exit: no atexit
            if util is not None:
                util.Finalize(None, _bye, exitpriority=0)
        return out

    return wrapper


def _bye() -> None:
    """At exit: a process that said hello says how it ends (``bye``, with the exception that ended
    it where Python left one in ``sys.last_value``: an uncaught exception, after which Python exits
    with status 1), and the held lines are written."""
    state = _state
    if state is None:
        return
    if state.started and not state.off:
        error = getattr(sys, "last_value", None)
        why = "" if error is None else f',"error":"{_plain(f"{type(error).__name__}: {error}"[:300])}","exitcode":1'
        state.held.append(f'{{"event":"bye","source":"auto","pid":{os.getpid()},"steps":{state.step}{why},"ts_ns":{_now()}}}\n')
    if state.held and state.writing.acquire(timeout=2.0):  # the flushing thread's write, if under way, first
        try:
            _write(state)
        finally:
            state.writing.release()


def _flushing(state: _State) -> None:
    """The writer thread: what is held, every FLUSH_S, until this process's hooks go silent; and
    every MEMORY_EVERY_S the allocator's retry count, which the next steps carry."""
    memory_at = time.monotonic()
    while not state.off:
        time.sleep(FLUSH_S)
        if time.monotonic() >= memory_at:
            memory_at = time.monotonic() + MEMORY_EVERY_S
            state.alloc_retries = _alloc_retries(state.device)
        if state.held:
            with state.writing:
                _write(state)


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
    distributed = getattr(torch, "distributed", None)
    if distributed is not None and callable(getattr(distributed, "init_process_group", None)):
        distributed.init_process_group = _init_process_group(distributed.init_process_group)
    optimizer.register_optimizer_step_pre_hook(_pre)
    optimizer.register_optimizer_step_post_hook(_post)
    init = optimizer.Optimizer.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if _state is not None:  # the state now (a forked rank gets its own)
            _state.has_optimizer = True
        init(self, *args, **kwargs)

    optimizer.Optimizer.__init__ = __init__
    setstate = optimizer.Optimizer.__setstate__

    @functools.wraps(setstate)
    def __setstate__(self: Any, *args: Any, **kwargs: Any) -> None:
        # an optimizer unpickled, never built here (mp.spawn's args, a pickled trainer): its
        # steps are the steps, not each backward as well
        if _state is not None:
            _state.has_optimizer = True
        setstate(self, *args, **kwargs)

    optimizer.Optimizer.__setstate__ = __setstate__
    autograd.backward = _backward(autograd.backward)
    iterator = dataloader._BaseDataLoaderIter
    iterator.__next__ = _next(iterator.__next__)
    if state.root and state.fd is not None and state.sock_path and state.conn is None:
        _connect(state)  # the first process's events go by the pipe: this connection is for requests


def _connect(state: _State) -> None:
    """This process's connection to gputop's socket, and the thread that answers its requests."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(state.sock_path or "")
    except OSError:  # no gputop to hear it: carry on without it
        conn.close()
        return
    state.conn = conn
    _listen(conn)


def _alloc_retries(device: str | None) -> int | None:
    """``torch.cuda.memory_stats(device)["num_alloc_retries"]`` of this process's device: only
    where CUDA is already initialised here (never initialised by this, no synchronization: the
    caching allocator's own counters); None elsewhere (the CPU, a device without its index)."""
    if device is None or not device.startswith("cuda:"):
        return None
    cuda = getattr(sys.modules.get("torch"), "cuda", None)
    try:
        if cuda is None or not cuda.is_initialized():
            return None
        value = cuda.memory_stats(device).get("num_alloc_retries")
    except Exception:  # noqa: BLE001 - a count we cannot read is n/a
        return None
    return value if isinstance(value, int) else None


def _pre(opt: Any, args: Any, kwargs: Any) -> None:
    state = _state
    if state is not None:
        state.in_step += 1


def _post(opt: Any, args: Any, kwargs: Any) -> None:
    state = _state
    if state is None:
        return
    if state.in_step:
        state.in_step -= 1
    state.has_optimizer = True  # however it came to be here (built, unpickled): it steps
    if state.off:
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
        t0 = _now()
        if state is not None and state.begin_ns is None:
            state.begin_ns = t0
        out = backward(*args, **kwargs)
        if state is not None:
            t1 = _now()
            state.backward_ns += t1 - t0
            if not state.off and not state.has_optimizer and not state.in_step:
                if state.device is None and args:
                    state.device = _device_of(args[0])
                _emit(state, t1)
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
                wait = _now() - t0
                if state.begin_ns is None:
                    state.begin_ns = t0
                state.loader = True
                state.wait_ns += wait
                if len(state.waits) < MAX_WAITS:
                    state.waits.append(f"[{t0},{wait}]")
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
        if _in_loader_worker():
            state.off = True
            return
        _hello(state, end_ns)
        _start(state, end_ns)
    begin = state.begin_ns
    state.begin_ns = end_ns
    state.step += 1
    wall = end_ns - begin if begin is not None and end_ns > begin else 0
    # a loader that fetches ahead (accelerate's, Lightning's) fetches no batch in the last step: 0
    samples = str(state.samples) if state.samples_known and (state.samples or state.loader) else "null"
    # durations go out as integer nanoseconds with a decimal exponent ("1234e-9": a JSON number,
    # the same float as 1234 / 1e9 once read): repr of a float costs ~4,000 instructions, an int's str ~200
    wait = ""
    if state.loader:
        wait = f',"data_wait_s":{state.wait_ns}e-9,"waits":[{",".join(state.waits)}]'
        state.wait_ns = 0
        state.waits.clear()
    if state.backward_ns:
        wait += f',"backward_s":{state.backward_ns}e-9'
        state.backward_ns = 0
    if state.alloc_retries is not None:
        wait += f',"alloc_retries":{state.alloc_retries}'
    state.samples, state.samples_known = 0, True
    state.held.append(
        f'{{"event":"step","step":{state.step},"samples":{samples},"loss":null,'
        f'"wall_s":{wall}e-9,"ts_ns":{end_ns},"source":"auto"{wait}{state.tag}}}\n'
    )
    if state.flusher is None:
        state.flusher = threading.Thread(target=_flushing, args=(state,), name="gputop-events", daemon=True)
        state.flusher.start()


def _in_loader_worker() -> bool:
    """Whether this process is a DataLoader worker (however it was started): it never steps."""
    worker = sys.modules.get("torch.utils.data._utils.worker")
    return getattr(worker, "_worker_info", None) is not None


def _identity() -> dict[str, int | str | None]:
    """Who this process is in the job: the launcher's environment, else torch.distributed's own
    answer once a process group is initialised (a local read: no collective)."""
    out: dict[str, int | str | None] = {}
    for key, name in IDENTITY_ENV:
        try:
            out[key] = int(os.environ[name])
        except (KeyError, ValueError):
            out[key] = None
    out["run_id"] = os.environ.get("TORCHELASTIC_RUN_ID")
    dist = sys.modules.get("torch.distributed")
    try:
        if out["rank"] is None and dist is not None and dist.is_available() and dist.is_initialized():
            out["rank"], out["world_size"] = int(dist.get_rank()), int(dist.get_world_size())
    except Exception:  # noqa: BLE001 - a fact we cannot read is left out
        pass
    return out


def _hello(state: _State, ts_ns: int) -> None:
    """The first event of each process: who it is, and the tag its steps carry."""
    who = _identity()
    pid = os.getpid()
    if who["rank"] is not None or not state.root:
        rank = "" if who["rank"] is None else f',"rank":{who["rank"]}'
        state.tag = f',"pid":{pid}{rank}'
    fields = [f'"pid":{pid}', f'"ppid":{os.getppid()}', f'"root":{"true" if state.root else "false"}']
    fields += [f'"{k}":{v}' if isinstance(v, int) else f'"{k}":"{_plain(v)}"' for k, v in who.items() if v is not None]
    if state.device is not None:
        fields.append(f'"device":"{_plain(state.device)}"')
        if state.device.startswith("cuda"):
            fields += _cuda_facts(state.device)
    state.held.append(f'{{"event":"hello","source":"auto",{",".join(fields)},"ts_ns":{ts_ns}}}\n')


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
    """The held lines, in whole lines (a pipe takes up to PIPE_BUF bytes at once unsplit; the
    socket is this process's own connection)."""
    held, take = state.held, state.held.popleft
    data = "".join([take() for _ in range(len(held))]).encode()
    fd = state.fd
    if state.off:
        return
    if fd is None:
        _send(state, data)
        return
    try:
        while data:
            cut = data.rfind(b"\n", 0, _PIPE_BUF) + 1 if len(data) > _PIPE_BUF else len(data)
            written = os.write(fd, data[: cut or len(data)])
            data = data[written:]
    except OSError:  # the reader has gone: carry on without it
        state.fd, state.off = None, True


def _send(state: _State, data: bytes) -> None:
    """``data`` on this process's connection to gputop's socket, opened at the first write."""
    try:
        if state.conn is None:
            if not state.sock_path:
                state.off = True
                return
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(state.sock_path)
            state.conn = conn
            _listen(conn)
        state.conn.sendall(data)
    except OSError:  # no gputop to hear it (gone, or a socket not ours): carry on without it
        state.conn, state.off = None, True


# ---- requests from gputop: a thread of the hooks' own, apart from the step path --------------


def _listen(conn: socket.socket) -> None:
    """Answer gputop's requests on ``conn`` (this process's connection) from a daemon thread."""
    import threading

    threading.Thread(target=_requests, args=(conn,), daemon=True, name="gputop-requests").start()


def _requests(conn: socket.socket) -> None:
    data = b""
    while True:
        try:
            chunk = conn.recv(4096)
        except OSError:
            return
        if not chunk:  # gputop has gone
            return
        *lines, data = (data + chunk).split(b"\n")
        for line in lines:
            try:
                _answer(line)
            except Exception:  # noqa: BLE001 - a request we cannot answer is left unanswered
                pass


def _answer(line: bytes) -> None:
    """A ``stacks`` request: this process's threads' stacks, as one JSON object, to its reply path."""
    import json

    request = json.loads(line)
    if not isinstance(request, dict) or request.get("request") != "stacks" or not isinstance(request.get("reply"), str):
        return
    who = _identity()
    state = _state
    root = state is not None and state.root
    answer = {"pid": os.getpid(), "rank": who["rank"], "root": root, "ts_ns": _now(), "threads": _stacks()}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as out:
        out.settimeout(5.0)
        out.connect(request["reply"])
        out.sendall(json.dumps(answer).encode())


def _stacks() -> list[dict[str, Any]]:
    """Each thread's Python stack (this one left out), the main thread first."""
    import threading
    import traceback

    frames: dict[int, Any] = getattr(sys, "_current_frames", dict)()
    names = {t.ident: t.name for t in threading.enumerate()}
    main, mine = threading.main_thread().ident, threading.get_ident()
    out = [
        {"thread": names.get(ident, f"thread {ident}"), "main": ident == main, "stack": "".join(traceback.format_stack(frame))}
        for ident, frame in frames.items()
        if ident != mine
    ]
    return sorted(out, key=lambda t: not t["main"])
