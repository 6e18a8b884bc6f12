"""Data sources: each wraps one outside dependency (pynvml, psutil, a recorded trace)."""
