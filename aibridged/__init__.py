"""aibridged: a self-hosted AI Gateway on trio.

Layers, highest first; a module imports only from its own layer or the ones below it
(tests/test_layers.py enforces this):

    cli, admin_cli, remote               command line (remote: over HTTP); trio.run only here
    daemon, startup, reload, proxyd      composition roots (gateway, proxy), providers' startup,
                                         reload loop
    api, dashboard, proxy                listeners: data plane (raw ASGI), control plane (Quart),
                                         the web dashboard on the control plane; the CONNECT
                                         proxy (aibridgeproxyd)
    providers, mcp, demo, tracing        vendor facts, provider snapshots; the built-in upstream;
                                         OpenTelemetry spans of the data plane
    intercept, clients                   relaying and parsing the wire formats; client detection
    recorder, group_commit, retention, dump, auth   consumers of the store
    store                                PostgreSQL (the only asyncio code)
    records, config, errors, log, metrics, safe, tokens, sdnotify, supervisor, secretbox
"""

__version__ = "0.1.0"
