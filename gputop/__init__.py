"""gputop: every CPU core beside every GPU's SMs, bandwidth and power, in a terminal."""

__version__ = "0.1.0"
