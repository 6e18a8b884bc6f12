"""Loaded at start-up by a peer monitor (nvitop) run by benchmarks/peers.py: the NVML fake as its driver.

nvitop reads NVML through nvidia-ml-py's ``pynvml``, the same module tests/fakenvml.py patches, so
installing the fake (``pynvml.nvmlLib = FakeNvml(...)``) before nvitop imports anything makes it see
the simulated devices that gputop sees. nvitop also asks for a few things gputop never does (compute
mode, persistence mode, encoder/decoder use, ECC totals, the power-management limit, display state,
the Windows driver model); the fake lacks those symbols, and each call would go through pynvml's
FunctionNotFound error path (an exception) on every refresh, which a real driver does not. They are
registered here with the answers an idle H100 on Linux gives, so nvitop runs its ordinary path.
Needs tests/ (fakenvml) on PYTHONPATH after this directory.
"""

import ctypes
import os

if os.environ.get("GPUTOP_FAKE_NVML"):
    import pynvml as N

    import fakenvml

    def _set(ctype, value):
        def impl(fake, dev, *outs):
            for out in outs:  # every out-parameter gets the value (sampling periods get it too)
                target = fakenvml._out(out, ctype)
                if target is None:
                    return N.NVML_ERROR_INVALID_ARGUMENT
                target.value = value(fake, dev) if callable(value) else value
            return N.NVML_SUCCESS

        return impl

    def _ecc(fake, dev, error_type, counter_type, out):
        target = fakenvml._out(out, ctypes.c_ulonglong)
        if target is None:
            return N.NVML_ERROR_INVALID_ARGUMENT
        target.value = 0
        return N.NVML_SUCCESS

    def _not_supported(fake, dev, *args):
        return N.NVML_ERROR_NOT_SUPPORTED

    fakenvml._symbol("nvmlDeviceGetComputeMode")(_set(ctypes.c_uint, N.NVML_COMPUTEMODE_DEFAULT))
    fakenvml._symbol("nvmlDeviceGetPersistenceMode")(_set(ctypes.c_uint, N.NVML_FEATURE_ENABLED))
    fakenvml._symbol("nvmlDeviceGetDisplayActive")(_set(ctypes.c_uint, N.NVML_FEATURE_DISABLED))
    fakenvml._symbol("nvmlDeviceGetEncoderUtilization", "nvmlDeviceGetDecoderUtilization")(_set(ctypes.c_uint, 0))
    fakenvml._symbol("nvmlDeviceGetPowerManagementLimit")(_set(ctypes.c_uint, lambda f, d: round(d.profile.power_limit_w * 1000)))
    fakenvml._symbol("nvmlDeviceGetTotalEccErrors")(_ecc)
    fakenvml._symbol("nvmlDeviceGetDriverModel", "nvmlDeviceGetDriverModel_v2")(_not_supported)
    fakenvml.IMPLEMENTED = frozenset(fakenvml._REGISTRY)  # what a default driver exports
    fakenvml.install_from_spec(os.environ["GPUTOP_FAKE_NVML"])
