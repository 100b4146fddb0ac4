"""The hot-path benchmark of aibridged (SPEC.md §14): ``make bench``, i.e. ``python -m bench.run``.

Modules:

- ``payloads``      deterministic request bodies shaped like coding-agent traffic
- ``payload_text``  the pseudo-prose, pseudo-code and schemas they are made of, sized to a target
- ``httpclient``    a tiny sans-IO HTTP/1.1 response parser and a blocking keep-alive connection
- ``fast_upstream`` a lean raw-ASGI fake upstream replaying precomputed, real-shaped responses
- ``upstream``      entry point running the fast or the demo upstream in its own process
- ``loadgen``       closed-loop load generation: ``wrk`` when installed, else a trio generator
- ``procs``         starting, pinning, sampling (CPU, RSS, machine speed), stopping by PID
- ``stack``         the upstream and gateway processes, and the API surfaces driven through them
- ``latency``       interleaved concurrency-1 sampling and its statistics
- ``measure``       relay check, added latency, stream TTFB, saturated throughput, profiles
- ``profile``       py-spy recording and the own-time / inclusive-time summary
- ``report``        machine facts, observations, the printed tables, the JSON and Markdown files
- ``run``           the command line and the order of things
"""
