"""Bundled PyTorch training workloads for gputop (cnn, mlp, transformer, matmul).

Each is a standalone script (`python workloads/cnn.py --help`); torch is imported only by the
scripts, never by this package file or by events.py, the dependency-free event helper.
"""
