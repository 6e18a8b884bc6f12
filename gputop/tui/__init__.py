"""The live terminal UI (Textual). The only package that imports textual.

``GputopApp(sampler, interval_s)`` in ``app.py``: the app owns the tick loop and hands each Sample
down to widgets that only render; widgets post messages (a GPU clicked) back up.
"""
