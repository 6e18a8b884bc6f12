"""The text of the live view's panels and header, as lines of styled pieces, without Textual.

The widgets (``gputop.tui.widgets``) draw these lines; they are built here, apart from Textual,
so that they can be tested (and measured) as text. A style is looked up by its component-class
name (``Styles``): a widget answers from gputop.tcss.
"""

from __future__ import annotations

import math
from typing import Iterable, Protocol, Sequence

from rich.cells import cell_len
from rich.style import Style

from gputop import format as fmt
from gputop.model import CpuSample, GpuSample, RankRow, RankStraggler
from gputop.workload.energy import gpu_uuid

GAP = "   "
# the live view's layout, which gputop.tui.app applies
WIDE_COLUMNS = 120  # from this width the CPU and the GPUs are side by side (the screen is "-wide")
FULL_PANELS_TWO_GPUS_ROWS = 56  # two full GPU panels need a terminal this tall; else one line each
DETAIL_ROWS = 40  # compact rows plus the selected GPU's full panel from this height
SHORT_ROWS = 34  # below this the screen is "-short": no charts, no workload log, no border round "no GPU"
GRID_ROWS, GRID_ROWS_SHORT = 6, 2  # the CPU grid's most rows of "97%" cells (below DETAIL_ROWS: the short)
LEVELS = "▁▂▃▄▅▆▇█"
WIDE_CELL = 4  # " 97%" or "3.1G"
LOST = "lost (fell off the bus?)"
SM_ON, SM_OFF = "■", "·"

Piece = tuple[str, "Style | None"]  # some text and its style (None: the panel's own)
Line = tuple[Piece, ...]  # one line of a panel, its pieces left to right
Item = tuple[Piece, ...]  # a field: pieces that ``pack`` keeps together on one line


class Styles(Protocol):
    """Where a builder finds the style of a component class ("panel--label", "load--busy")."""

    def style_of(self, name: str) -> Style: ...


class Rows:
    """Lines that ``pack`` places as they are (a grid), each on its own line."""

    __slots__ = ("lines",)

    def __init__(self, lines: list[Line]) -> None:
        self.lines = lines


def item(*pieces: str | Piece) -> Item:
    """Pieces as one item; a str is unstyled; empty pieces are left out (as Rich's append does)."""
    out: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, str):
            if piece:
                out.append((piece, None))
        elif piece[0]:
            out.append(piece)
    return tuple(out)


def field(st: Styles, label: str, value: str, *rest: str | Piece) -> Item:
    """ "label value ...": the label dim, the value emphasised, extra pieces as given."""
    out: list[Piece] = [(label + " ", st.style_of("panel--label"))] if label else []
    if value:
        out.append((value, st.style_of("panel--value")))
    return (*out, *item(*rest)) if rest else tuple(out)


def load_style(st: Styles, pct: float | None) -> Style:
    return st.style_of("load-" + fmt.load_class(pct))


_WIDE: dict[str, int] = {}  # cells of the texts that are not printable ASCII, as last measured


def _cells(text: str) -> int:
    """Rich's ``cell_len``: printable ASCII is a cell a character; other texts are kept (Rich's
    own cache is shared by all of Textual, and missed: a glyph grid measured glyph by glyph)."""
    if text.isascii() and text.isprintable():
        return len(text)
    n = _WIDE.get(text)
    if n is None:
        if len(_WIDE) >= 1024:
            _WIDE.clear()
        n = _WIDE[text] = cell_len(text)
    return n


def cells(pieces: Sequence[Piece]) -> int:
    """Cells the pieces take."""
    n = 0
    for text, _ in pieces:
        n += _cells(text)
    return n


def plain(pieces: Sequence[Piece]) -> str:
    return "".join(text for text, _ in pieces)


def pack(blocks: Iterable[Sequence[Item] | Rows], width: int) -> list[Line]:
    """Each block's items on their own line(s), packed left to right with GAP while they fit;
    ``Rows`` as they are; the trailing white space of the last line cut (as Rich's
    ``Text.rstrip`` does)."""
    out: list[Line] = []
    gap = (GAP, None)
    for block in blocks:
        if isinstance(block, Rows):
            out += block.lines
            continue
        line: list[Piece] = []
        used = 0
        for it in block:
            n = cells(it)
            if used and used + len(GAP) + n > width:
                out.append(tuple(line))
                line, used = [], 0
            if used:
                line.append(gap)
                used += len(GAP)
            line += it
            used += n
        if used:
            out.append(tuple(line))
    while out:  # Text.rstrip: white space off the end, across lines
        last = list(out[-1])
        while last and not last[-1][0].rstrip():
            last.pop()
        if last:
            text, style = last[-1]
            last[-1] = (text.rstrip(), style)
            out[-1] = tuple(last)
            break
        out.pop()
    return out


# -- the CPU panel --------------------------------------------------------------------------------


def cpu_lines(
    cpu: CpuSample | None,
    width: int,
    st: Styles,
    *,
    show_freq: bool = False,
    job_cores: frozenset[int] = frozenset(),
    max_grid_rows: int = GRID_ROWS,
) -> list[Line]:
    """Per-core cells (utilization, or frequency with ``show_freq``), then the totals; the
    cores in ``job_cores`` marked."""
    if cpu is None:
        return [item(("waiting for the first sample", st.style_of("panel--dim")))]
    width = max(width, 10)
    n = len(cpu.core_util_pct)
    busy = item((f"{cpu.busy_cores:.1f} of {n} cores busy", st.style_of("panel--value")), f" ({fmt.pct(cpu.cpu_util_pct)})")
    first = [busy, field(st, "load", fmt.num(cpu.load1, 2))]
    if job_cores:
        first.append(item(("job's cores underlined", st.style_of("cpu--job"))))
    if show_freq:
        known = [m for m in cpu.core_freq_mhz if m is not None]
        first.append(field(st, "avg freq", fmt.mhz(sum(known) / len(known) if known else None)))
    blocks: list[list[Item] | Rows] = [
        first,
        _cpu_grid(cpu, width, st, show_freq, job_cores, max_grid_rows),
        [field(st, "RAM", fmt.used_total(cpu.ram_used_bytes, cpu.ram_total_bytes)), field(st, "package power", fmt.watts(cpu.cpu_power_w))],
    ]
    return pack(blocks, width)


def _cpu_grid(cpu: CpuSample, width: int, st: Styles, show_freq: bool, job: frozenset[int], max_grid_rows: int) -> Rows:
    """Four-column cells while they fit in ``max_grid_rows``; else one block glyph per core."""
    n = len(cpu.core_util_pct)
    per_row = max(1, (width + 1) // (WIDE_CELL + 1))
    wide = -(-n // per_row) <= max_grid_rows
    cells_: list[Piece] = []
    mark = st.style_of("cpu--job") if job else None
    for core, (util, mhz) in enumerate(zip(cpu.core_util_pct, cpu.core_freq_mhz)):
        style = load_style(st, util)
        if mark is not None and core in job:
            style = style + mark
        if wide:
            label = fmt.ghz_cell(mhz) if show_freq else f"{util:3.0f}%"
            cells_.append((f"{label:>{WIDE_CELL}}", style))
        else:
            level = LEVELS[min(len(LEVELS) - 1, int(util / 100 * len(LEVELS)))]
            cells_.append((level, style))
    if not wide:
        per_row = width
    sep = (" ", None)
    rows: list[Line] = []
    for i in range(0, n, per_row):
        row = cells_[i : i + per_row]
        rows.append(item(*(p for cell in row for p in (sep, cell)))[1:] if wide else item(*row))
    return Rows(rows)


def cpu_subtitle(show_freq: bool) -> str:
    return "core MHz (f)" if show_freq else "core load (f: MHz)"


# -- a GPU's full panel ---------------------------------------------------------------------------


def short_name(name: str) -> str:
    return name.removeprefix("NVIDIA ").removeprefix("Tesla ").removeprefix("AMD ")


def gpu_title(gpu: GpuSample) -> str:
    """ "GPU0 H100 80GB HBM3": the panel's border title (plain text, not markup)."""
    return f"GPU{gpu.info.index} {short_name(gpu.info.name)}"


def sms_active_text(gpu: GpuSample) -> str | None:
    """ "118 of 132 SMs active", or None without GPM."""
    n = gpu.sms_active
    return None if n is None else f"{n:.0f} of {gpu.info.sm_count} SMs active"


def trap_warning(gpu: GpuSample) -> str | None:
    """The plain-words warning when NVML util and SM activity disagree."""
    if not fmt.util_trap(gpu.gpu_util_pct, gpu.sm_active_pct):
        return None
    busy = gpu.sms_active
    of = f"{busy:.0f} of {gpu.info.sm_count} SMs" if busy is not None else fmt.pct(gpu.sm_active_pct) + " of SMs"
    return f"util {fmt.pct(gpu.gpu_util_pct)} but only {of} busy: kernels are small or stalled"


def panel_subtitle(gpu: GpuSample) -> str:
    """What the device is, under its panel: "Hopper · PCIe 5x16" (the link as at start; with
    its most where it had trained below it: "PCIe 1x16 (max 4x16)")."""
    info = gpu.info
    link = fmt.pcie_links(info.pcie_link_gen, info.pcie_link_width, info.pcie_link_gen_max, info.pcie_link_width_max)
    parts = [info.architecture or "", "" if link == fmt.NA else f"PCIe {link}"]
    return " · ".join(p for p in parts if p)


def gpu_lines(gpu: GpuSample | None, width: int, st: Styles, energy_j: float | None) -> list[Line]:
    """Every metric of one GPU, its SMs as a grid of cells; ``energy_j``: since gputop started."""
    if gpu is None:
        return [item(("waiting for the first sample", st.style_of("panel--dim")))]
    if gpu.lost:
        return [item((LOST, st.style_of("panel--lost")))]
    width = max(width, 20)
    if gpu.info.vendor == "amd":
        return pack(_amd_blocks(gpu, st, energy_j), width)
    return pack(_gpu_blocks(gpu, width, st, energy_j), width)


def _gpu_blocks(gpu: GpuSample, width: int, st: Styles, energy_j: float | None) -> list[list[Item] | Rows]:
    def f(label: str, value: str, *rest: str | Piece) -> Item:
        return field(st, label, value, *rest)

    sms = sms_active_text(gpu)
    head = (
        item((sms, st.style_of("panel--value")), f" ({fmt.pct(gpu.sm_active_pct)})")
        if sms
        else f("SM activity", "n/a", (f" ({_sm_gap(gpu)})", st.style_of("panel--dim")))
    )
    blocks: list[list[Item] | Rows] = [[head, f("NVML util", fmt.pct(gpu.gpu_util_pct)), f("tensor", fmt.pct(gpu.tensor_active_pct))]]
    grid = _sm_grid(gpu, width, st)
    if grid is not None:
        blocks.append(grid)
    warning = trap_warning(gpu)
    if warning:
        blocks.append([item(("⚠ " + warning, st.style_of("panel--warn")))])
    peak = gpu.info.peak_dram_bw_bytes_per_s
    mem_pct = fmt.ratio(gpu.mem_used_bytes, gpu.mem_total_bytes)
    power_pct = fmt.ratio(gpu.power_w, gpu.power_limit_w)
    blocks += [
        [
            f("DRAM", fmt.rate(gpu.dram_bw_bytes_per_s), f" {fmt.pct(gpu.dram_bw_util_pct)} of {fmt.rate(peak)}"),
            f("memory", fmt.used_total(gpu.mem_used_bytes, gpu.mem_total_bytes), f" ({fmt.pct(mem_pct)})"),
        ],
        [
            f("power", fmt.watts(gpu.power_w), f" of {fmt.watts(gpu.power_limit_w)} ({fmt.pct(power_pct)})"),
            f("energy", fmt.joules(energy_j), " since start"),
        ],
        [
            f("clocks SM", fmt.mhz(gpu.sm_clock_mhz), f", mem {fmt.mhz(gpu.mem_clock_mhz)}"),
            f("temp", fmt.celsius(gpu.temp_c)),
            f("fan", fmt.pct(gpu.fan_pct)),
            f("pstate", "n/a" if gpu.pstate is None else f"P{gpu.pstate}"),
        ],
        [f("throttle", fmt.reasons(gpu.clock_event_reasons))],
        [
            f("PCIe", f"↑{fmt.rate(gpu.pcie_tx_bytes_per_s)} ↓{fmt.rate(gpu.pcie_rx_bytes_per_s)}"),
            f("NVLink", f"↑{fmt.rate(gpu.nvlink_tx_bytes_per_s)} ↓{fmt.rate(gpu.nvlink_rx_bytes_per_s)}"),
        ],
    ]
    return blocks


def _amd_blocks(gpu: GpuSample, st: Styles, energy_j: float | None) -> list[list[Item] | Rows]:
    """An AMD GPU in its own words: CUs where NVIDIA says SMs, the memory controllers' busy share
    (UMC activity) where NVIDIA has GPM's DRAM bandwidth, XGMI where NVLink."""

    def f(label: str, value: str, *rest: str | Piece) -> Item:
        return field(st, label, value, *rest)

    dim = st.style_of("panel--dim")
    cus = fmt.num(gpu.info.sm_count, 0)
    mem_pct = fmt.ratio(gpu.mem_used_bytes, gpu.mem_total_bytes)
    power_pct = fmt.ratio(gpu.power_w, gpu.power_limit_w)
    return [
        [f("CUs busy", fmt.pct(gpu.gpu_util_pct), (f" of the time (GFX activity; {cus} CUs)", dim))],
        [
            f("memory ctrl busy", fmt.pct(gpu.mem_busy_pct), (" (UMC activity, not bandwidth)", dim)),
            f("memory", fmt.used_total(gpu.mem_used_bytes, gpu.mem_total_bytes), f" ({fmt.pct(mem_pct)})"),
        ],
        [
            f("power", fmt.watts(gpu.power_w), f" of {fmt.watts(gpu.power_limit_w)} ({fmt.pct(power_pct)})"),
            f("energy", fmt.joules(energy_j), " since start"),
        ],
        [
            f("clocks GFX", fmt.mhz(gpu.sm_clock_mhz), f", mem {fmt.mhz(gpu.mem_clock_mhz)}"),
            f("temp edge", fmt.celsius(gpu.temp_c), f", hotspot {fmt.celsius(gpu.temp_hotspot_c)}, mem {fmt.celsius(gpu.temp_mem_c)}"),
            f("fan", fmt.pct(gpu.fan_pct)),
        ],
        [f("throttle", fmt.reasons(gpu.clock_event_reasons))],
        [f("XGMI", f"read {fmt.rate(gpu.xgmi_read_bytes_per_s)} write {fmt.rate(gpu.xgmi_write_bytes_per_s)}")],
    ]


def _sm_grid(gpu: GpuSample, width: int, st: Styles) -> Rows | None:
    """One cell per SM, ceil(active) of them filled; rows as wide as the panel."""
    count, active = gpu.info.sm_count, gpu.sms_active
    if not count or active is None:
        return None
    on = min(count, math.ceil(active - 1e-9))
    rows = -(-count // width)
    per_row = -(-count // rows)  # balanced rows: 2 x 66 rather than 92 + 40
    sm_on, sm_off = st.style_of("sm--on"), st.style_of("sm--off")
    lines = []
    for start in range(0, count, per_row):
        end = min(start + per_row, count)
        lines.append(item((SM_ON * (max(0, min(on, end) - start)), sm_on), (SM_OFF * (end - max(on, start) if end > on else 0), sm_off)))
    return Rows(lines)


def _sm_gap(gpu: GpuSample) -> str:
    i = gpu.info
    return fmt.sm_gap(i.architecture, i.gpm_supported, i.mig_enabled)


NO_GPU_FOUND = "no NVIDIA GPU found"


def no_gpu_lines(reason: str, width: int, st: Styles) -> list[Line]:
    """Why no GPU is shown: a plain statement, not an error screen."""
    lead = "No GPU shown: "
    if len(lead) + len(reason) > width:  # one line where the short form fits (40 columns)
        lead = "No GPU: "
    return [item((lead, st.style_of("panel--label")), (reason, st.style_of("panel--value")))]


# -- the header -----------------------------------------------------------------------------------


def fit_parts(line: Line, forms: list[tuple[list[Item], bool]], width: int) -> Line:
    """``line``, then each part's first form that fits in ``width`` (with three spaces before
    it); a part none of whose forms fits is left out, and where it is a stop (a state or a
    warning) nothing after it is shown (not a GPU without its warning)."""
    used = cells(line)
    for part_forms, stop in forms:
        for part in part_forms:
            n = cells(part)
            if used + 3 + n <= width:
                line += (("   ", None), *part)
                used += 3 + n
                break
        else:
            if stop:
                break
    return line


def header_start(st: Styles, host: str) -> Line:
    line = item(("gputop", st.style_of("panel--value")))
    return line + item((f" {host}", st.style_of("panel--label"))) if host else line


def live_header_parts(
    st: Styles,
    state_forms: list[Item],
    interval_s: float,
    selected_gpu: int | None,
    sort_label: str,
    own_cpu_pct: float | None,
    own_driver: tuple[float | None] | None = None,
) -> list[tuple[list[Item], bool]]:
    """The live view's header after "gputop host": its state (each form, longest first), the
    pace, the selected GPU and the process table's sort (neither where there is no GPU: the
    GPU panel says why, once), gputop's own CPU, its own time in GPU driver calls where it is
    counted (``own_driver``: its ms per second, in a tuple; None: not counted) and the help key."""
    driver = [] if own_driver is None else [([field(st, "driver", fmt.ms_per_s(own_driver[0]))], False)]
    return [
        (state_forms, True),
        ([field(st, "every", f"{interval_s:g} s")], False),
        *(([p], False) for p in gpu_parts(st, selected_gpu, sort_label)),
        ([field(st, "own CPU", fmt.pct(own_cpu_pct, 1))], False),
        *driver,
        ([help_part(st)], False),
    ]


def gpu_parts(st: Styles, selected_gpu: int | None, sort_label: str) -> list[Item]:
    return [] if selected_gpu is None else [field(st, "GPU", str(selected_gpu)), field(st, "sort", sort_label)]


def help_part(st: Styles) -> Item:
    return item(("? help", st.style_of("panel--dim")))


# ---- a distributed job's ranks (the live view's and the replay's ranks table) -----------------

RANK_COLUMNS = (("rank", 4), ("pid", 8), ("GPU", 8), ("steps", 7), ("steps/s", 8), ("step p50", 9), ("data wait", 9), ("SM %", 5))


def rank_gpu(rank: RankRow, gpus: Sequence[GpuSample]) -> tuple[str, GpuSample | None]:
    """The GPU a rank runs on as the GPU panels name it ("GPU 1": its hello's UUID is that
    device's), else its CUDA device ("cuda:1"); "n/a" on the CPU or where it said none."""
    device = rank.device or ""
    if not device.startswith("cuda"):
        return fmt.NA, None
    if rank.device_uuid:
        uuid = gpu_uuid(rank.device_uuid)
        for gpu in gpus:
            if not gpu.lost and (gpu.info.uuid or "").lower() == uuid:
                return f"GPU {gpu.info.index}", gpu
    return device, None


def _rank_cells(rank: RankRow, gpus: Sequence[GpuSample]) -> list[str]:
    gpu_name, gpu = rank_gpu(rank, gpus)
    sm = None if gpu is None else gpu.sm_active_pct
    share = rank.data_wait_share
    return [
        str(rank.rank),
        fmt.NA if rank.pid is None else str(rank.pid),
        gpu_name,
        fmt.count(rank.steps),
        fmt.amount(rank.steps_per_s),
        fmt.step_time(rank.step_p50_s),
        fmt.NA if share is None else f"{100 * share:.0f} %",
        fmt.NA if sm is None else f"{sm:.0f}",
    ]


def ranks_lines(
    rows: Sequence[RankRow], straggler: RankStraggler | None, stall: str | None, gpus: Sequence[GpuSample], st: Styles
) -> list[Line]:
    """The ranks table: a row per rank (its GPU's SM % from ``gpus``, the latest sample's), then
    the rank that stopped, then the straggler and why."""
    label, value, warn = st.style_of("panel--label"), st.style_of("panel--value"), st.style_of("panel--warn")
    head: list[Piece] = []
    for name, width in RANK_COLUMNS:
        head.append((name.rjust(width) + " ", label))
    out: list[Line] = [(*head, ("state", label))]
    for rank in rows:
        pieces: list[Piece] = [(text.rjust(width) + " ", value) for text, (_, width) in zip(_rank_cells(rank, gpus), RANK_COLUMNS)]
        pieces.append((rank.state, warn if rank.state in ("stalled", "exited") else value))
        out.append(tuple(pieces))
    if stall:
        out.append((("⚠ " + stall, warn),))
    if straggler is not None:
        why = straggler.reason or "cause not measured"
        out.append((("straggler ", label), (f"rank {straggler.rank} ({why})", warn), (": " + straggler.evidence, None)))
    elif len(rows) > 1 and all(r.step_p50_s is not None for r in rows):
        out.append((("straggler ", label), ("none: no rank's own work per step leads the others", None)))
    return out
