import pytest

from gputop import format as fmt

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("func", [fmt.text, fmt.num, fmt.pct, fmt.bytes_, fmt.rate, fmt.watts, fmt.joules, fmt.mhz, fmt.celsius])
def test_none_is_na_never_zero(func):
    assert func(None) == "n/a"


def test_zero_is_zero_not_na():
    assert fmt.pct(0.0) == "0 %" and fmt.watts(0) == "0 W" and fmt.bytes_(0) == "0 B"


@pytest.mark.parametrize(
    "value, expected",
    [
        (512, "512 B"),
        (1536, "1.5 KiB"),
        (80 * 1024**3, "80 GiB"),
        (81559 * 1024**2, "79.6 GiB"),
    ],
)
def test_bytes_are_binary(value, expected):
    assert fmt.bytes_(value) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        (3.35e12, "3.35 TB/s"),
        (2_000_000_000, "2 GB/s"),
        (999, "999 B/s"),
        (450e9, "450 GB/s"),
    ],
)
def test_rates_are_decimal(value, expected):
    assert fmt.rate(value) == expected


def test_joules_scale():
    assert fmt.joules(123_400) == "123 kJ" and fmt.joules(12.5) == "12.5 J"


@pytest.mark.parametrize("value, cls", [(None, "-na"), (0, "-idle"), (20, "-light"), (60, "-busy"), (95, "-hot")])
def test_load_class(value, cls):
    assert fmt.load_class(value) == cls


def test_util_trap():
    assert fmt.util_trap(100, 23) is True
    assert fmt.util_trap(100, 80) is False
    assert fmt.util_trap(40, 10) is False
    assert fmt.util_trap(100, None) is False  # without GPM we cannot tell: no warning, no guess


def test_reasons_in_words():
    assert fmt.reasons(None) == "n/a"
    assert fmt.reasons(()) == "none"
    assert fmt.reasons(("sw_power_cap", "hw_thermal_slowdown")) == "power cap, too hot (hardware)"
    assert fmt.reasons(("unknown_0x800",)) == "unknown 0x800"


def test_ratio_never_divides_by_zero_or_guesses():
    assert fmt.ratio(1.0, 4.0) == 25.0
    assert fmt.ratio(None, 4.0) is None and fmt.ratio(1.0, None) is None and fmt.ratio(1.0, 0) is None


def test_ghz_cell_fits_four_columns():
    assert fmt.ghz_cell(3100) == "3.1G" and fmt.ghz_cell(None) == "n/a"


@pytest.mark.parametrize(
    "arch, gpm, mig, words",
    [
        ("Ampere", False, False, "needs GPM: Hopper or newer"),
        ("Hopper", False, False, "GPM not available from this driver"),
        ("Hopper", True, False, "first GPM reading pending"),
        ("Hopper", False, True, "not read on a MIG-enabled device"),
        (None, False, False, "GPM not supported on this device"),
    ],
)
def test_sm_gap_says_why_sm_activity_is_missing(arch, gpm, mig, words):
    assert fmt.sm_gap(arch, gpm, mig) == words


@pytest.mark.parametrize("value, text", [(None, "n/a"), (183.24, "183.2"), (8.237, "8.24"), (0.0371, "0.0371"), (0.0, "0")])
def test_tflops_keeps_the_digits_that_matter(value, text):
    assert fmt.tflops(value) == text


@pytest.mark.parametrize("value, text", [(None, "n/a"), (18.53, "18.5 %"), (0.042, "0.042 %"), (0.0, "0.0 %")])
def test_small_pct_never_rounds_a_known_value_to_zero(value, text):
    assert fmt.small_pct(value) == text
