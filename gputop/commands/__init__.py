"""One module per command (``add_parser(sub)`` and ``run(args, ...)``, collaborators passed in),
beside the helpers only commands use: ``stats`` (report's numbers), ``progress`` (report's and
merge's progress bar), ``exporter`` (serve's Prometheus collector).

Nothing is imported here: ``gputop.cli`` imports a command's module only when the command line
names it (``cli.COMMANDS``), so the live view's start-up does not grow with the commands.
"""
