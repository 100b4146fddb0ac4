"""The benchmark of aibridged (docs/performance.md): ``make bench``, i.e. ``python -m bench.run``.

Modules:

- ``payloads``        deterministic request bodies shaped like coding-agent traffic
- ``payload_text``    the pseudo-prose, pseudo-code and schemas they are made of, sized to a target
- ``client_headers``  the headers the agents' SDKs send with them
- ``httpclient``      a tiny sans-IO HTTP/1.1 response parser and a blocking keep-alive connection
- ``fast_upstream``   a lean raw-ASGI fake upstream replaying precomputed, real-shaped responses
- ``paced_upstream``  a raw-socket server of slowly paced Anthropic streams (many-streams scenario)
- ``upstream``        entry point running the fast or the demo upstream (and the paced one)
- ``loadgen``         closed-loop load generation: ``wrk`` when installed, else a trio generator
- ``streamgen``       thousands of concurrent streams held open, each read to its end and checked
- ``procs``           starting, pinning, open-file limits, sampling (CPU, RSS, speed), stopping
- ``database``        the bench's PostgreSQL both gateways use, its CPU sampled over its processes
- ``recorder_rate``   the recorder's sustained write rate, ``aibridged.recorder`` straight into it
- ``litellm_proxy``   LiteLLM's proxy in its own venv, the comparison point
- ``stack``           the upstream, the gateways (recording on, off) and LiteLLM, the API surfaces
- ``latency``         interleaved concurrency-1 sampling and its statistics
- ``measure``         relay check, added latency, stream TTFB, recording on vs off, saturated
                      throughput, profiles, the recorder's write rate
- ``streams``         the many-open-streams scenario: errors by kind, RSS per stream
- ``profile``         py-spy recording and the own-time / inclusive-time summary
- ``recording_profile`` py-spy on the gateway with recording on and off in turns: how much of
                      its busy time is recording's own code (its own script)
- ``facts``           the machine, the tools and the state of the code
- ``targets``         the targets of docs/performance.md and the bench's own, with verdicts
- ``tables``          the tables of the report
- ``report``, ``report_sections``   observations, the printed summary, JSON and Markdown
- ``run``             the command line and the order of things
- ``retention_sweep`` the retention sweep under a recording load (its own script), with
                      ``retention_data`` (the rows to sweep, the counts), ``retention_report``
"""
