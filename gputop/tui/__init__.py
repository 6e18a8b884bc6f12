"""The live terminal UI (Textual). The only package that imports textual.

``GputopApp(sampler, interval_s, workload=None)`` in ``app.py``: the app owns the tick loop and
hands each Sample (and a launched workload's WorkloadState) down to widgets that only render;
widgets post messages (a GPU clicked) back up. ``ReplayApp`` in ``replay.py`` is the same app
fed from a recording, with a time cursor.
"""
