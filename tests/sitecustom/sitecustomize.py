"""Loaded by Python at start-up when tests/sitecustom is on PYTHONPATH (subprocess tests only).

It installs the NVML fake named by GPUTOP_FAKE_NVML before gputop imports pynvml, and the
libamd_smi fake named by GPUTOP_FAKE_AMDSMI before gputop imports amdsmi, so the real CLI runs
end to end against simulated devices. The product code has no hook for this.
"""

import os

if os.environ.get("GPUTOP_FAKE_NVML"):
    import fakenvml

    fakenvml.install_from_spec(os.environ["GPUTOP_FAKE_NVML"])

if os.environ.get("GPUTOP_FAKE_AMDSMI"):
    import fakeamdsmi

    fakeamdsmi.install_from_spec(os.environ["GPUTOP_FAKE_AMDSMI"])
