"""The live view's data side, headless (no textual): ``feed`` (where the app's samples come
from: live or a recording), ``history`` (the charts' bounded series), ``lines`` (the panels' and
header's text as styled pieces) and ``timeline`` (a recorded workload's state at the replay's
cursor). The widgets that draw them are ``gputop.tui``'s.
"""
