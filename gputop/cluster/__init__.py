"""`gputop cluster`'s data side: the GPU fleet read from the Prometheus it already runs (headless).

A few PromQL queries per refresh, whatever the node count, turn what `gputop serve`,
dcgm-exporter and node-exporter export into one typed sample per node:

- ``names``: every exporter's metric names, labels and units mapped once to gputop's
- ``promql``: the queries, built around a user's ``--selector``
- ``client``: the HTTP client (httpx), every failure as one line (``PromError``)
- ``decode``: query results to ``nodes`` (``ClusterNode``, ``ClusterGpu``, ``ClusterSample``)
- ``fleet``: ``ClusterFeed``, a refresh and a node's history, what the TUI and ``--once`` draw

The command (``add_parser(sub)``, ``run(args)``) is ``gputop.commands.cluster``.

Imports neither textual nor torch: the TUI (``gputop.tui.cluster``) is wired in ``gputop.cli``.
"""
