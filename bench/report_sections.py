"""The report's sections for the LiteLLM comparison, the many-open-streams scenario and the bench's
targets (Markdown; the printed summary uses the same tables)."""

from __future__ import annotations

from typing import Any

from bench.tables import (
    LITELLM_LATENCY_HEADERS,
    LITELLM_THROUGHPUT_HEADERS,
    RECORDING_LATENCY_HEADERS,
    RECORDING_THROUGHPUT_HEADERS,
    STREAMS_HEADERS,
    WRITER_HEADERS,
    bench_target_rows,
    litellm_latency_rows,
    litellm_throughput_rows,
    recording_latency_rows,
    recording_throughput_rows,
    streams_rows,
    table,
    writer_rows,
)

TARGET_HEADERS = ("target", "measured", "limit", "verdict", "detail")


def machine_state_line(results: dict[str, Any]) -> str:
    """The direct path's p50 at concurrency 1: the best indicator of the VM's speed in this run."""
    parts = [
        f"{name} {r['direct_ms']['p50']:g} ms"
        for name, r in results["latency"].items()
        if r.get("direct_ms")
    ]
    return "- Machine state: direct-path p50 at concurrency 1: " + ", ".join(parts) + "."


def litellm_line(results: dict[str, Any]) -> str:
    lm, c = results["litellm"], results["config"]
    if not lm["up"]:
        return f"- LiteLLM: **not measured**: {lm['error']}."
    return (
        f"- LiteLLM {lm['version']} (pinned {lm['pinned_version']}, venv `{lm['venv']}`): "
        f"`{lm['command']}`, env {', '.join(f'{k}={v}' for k, v in lm['env'].items())}, no "
        f"database, one worker, same upstream; ready in {lm['startup_s']} s, exit code "
        f"{lm['exit_code']}. Up for the whole run, idle while the others are measured; warmed "
        f"with {c['litellm_warmup_s']:g} s of load per kind before its first measured run."
    )


def targets_section(results: dict[str, Any]) -> list[str]:
    return [
        "## Targets",
        "",
        table(TARGET_HEADERS, bench_target_rows(results["bench_targets"])),
        "",
    ]


def litellm_section(results: dict[str, Any]) -> list[str]:
    lm, c = results["litellm"], results["config"]
    if not lm["up"]:
        return ["## LiteLLM side by side", "", f"Not measured: {lm['error']}", ""]
    lines = [
        "## LiteLLM side by side",
        "",
        f"Concurrency 1, direct and LiteLLM interleaved ({c['litellm_latency_requests_per_path']:,}"
        f" timed requests per path after {c['litellm_latency_warmup_pairs']} warm-up pairs); "
        "`gateway added p50` is from the gateway's own interleaved run above:",
        "",
        table(
            LITELLM_LATENCY_HEADERS,
            litellm_latency_rows(results["latency_litellm"], results["latency"]),
        ),
        "",
        "Saturated, the same rounds as above (direct / gateway / LiteLLM, medians):",
        "",
        table(LITELLM_THROUGHPUT_HEADERS, litellm_throughput_rows(results["throughput_summary"])),
        "",
    ]
    failed = {
        name: check["litellm"]
        for name, check in results["relay_check"].items()
        if "litellm" in check and not check["litellm"]["ok"]
    }
    for name, check in failed.items():
        lines += [f"- LiteLLM failed the {name} check (left out): {check.get('answer')}", ""]
    memory = results.get("litellm_memory") or {}
    if memory:
        lines += [
            "LiteLLM RSS (MiB): "
            + ", ".join(
                f"{when.replace('_', ' ')} {m['rss_kb'] / 1024:.0f}" for when, m in memory.items()
            )
            + ".",
            "",
        ]
    return lines


def streams_section(results: dict[str, Any]) -> list[str]:
    streams, c = results.get("streams") or {}, results["config"]["streams"]
    if not streams:
        return []
    duration = c["interval_s"] * c["deltas"]
    lines = [
        f"## {c['streams']:,} concurrent open streams",
        "",
        f"Anthropic Messages streams (small body) from `bench.paced_upstream`: {c['deltas']} text "
        f"deltas, one per {c['interval_s']:g} s (~{duration:g} s per stream, 30 events with the "
        f"framing ones). `bench.streamgen` (trio, one connection per stream, at most {c['ramp']} "
        "opening at once) opens all of them, reads each to its end and checks it ends with "
        "`message_stop` after every delta. RSS growth per stream = (RSS at the peak - RSS "
        "before) / streams open at the peak; RSS is `VmRSS` of the measured process, sampled "
        "twice a second.",
        "",
        table(STREAMS_HEADERS, streams_rows(streams)),
        "",
    ]
    for via, r in streams.items():
        if "error" in r:
            continue
        extra = [f"open-file limit {r['nofile_limit']}", f"fds before {r['fds_before']}"]
        if r.get("statuses"):
            extra.append("statuses " + ", ".join(f"{k}: {v}" for k, v in r["statuses"].items()))
        if r.get("log_problems"):
            extra.append("logged " + ", ".join(f"`{k}` x{v}" for k, v in r["log_problems"].items()))
        lines.append(f"- {via}: " + "; ".join(extra) + ".")
        for status, body in (r.get("error_bodies") or {}).items():
            lines.append(f"- {via}: a {status} answer: `{body[:200]}`")
    lines.append("")
    return lines


def database_line(results: dict[str, Any]) -> str:
    c = results["config"]
    db = c.get("database") or {}
    where = f"pinned to CPU {db['cpu']}" if db.get("cpu") is not None else "unpinned"
    return (
        f"- Database: {db.get('kind', 'PostgreSQL')}, {where}, ready in {db.get('startup_s')} s. "
        f"Recording off: `{c.get('gateway_norec_command', '-')}` (`ai_gateway.recording = "
        f"false`, the same database), exit code {c.get('gateway_norec_exit_code')}."
    )


def recording_section(results: dict[str, Any]) -> list[str]:
    """Recording on vs off (concurrency 1 and saturated) and the recorder's write rate."""
    c = results["config"]
    latency = results.get("latency_recording") or {}
    through = recording_throughput_rows(results["throughput_summary"])
    rate = results.get("recorder_rate") or {}
    steady = results.get("recording_steady") or {}
    delayed = results.get("recording_delayed") or {}
    if not latency and not through and not rate and not steady and not delayed:
        return []
    lines = ["## Recording on vs off", ""]
    if latency:
        lines += [
            f"Concurrency 1: the gateway with recording off and the one with recording on "
            f"interleaved request by request ({c['recording_latency_requests_per_path']:,} timed "
            f"requests per path after {c['latency_warmup_pairs']} warm-up pairs), same body. "
            "`added` = on percentile - off percentile; `paired d` = percentile of the per-pair "
            "differences; the stream row times the first complete SSE event.",
            "",
            table(RECORDING_LATENCY_HEADERS, recording_latency_rows(latency)),
            "",
        ]
    if through:
        lines += [
            "Saturated, the same rounds as above (on and off swap places every other round, "
            "medians). `CPU ms/req` = the gateway's CPU per request; `PG CPU` = the database "
            "(postmaster and backends) during the recording-on runs.",
            "",
            table(RECORDING_THROUGHPUT_HEADERS, through),
            "",
        ]
    lines += _steady_lines(steady)
    lines += _delayed_lines(delayed)
    seen = results.get("recorder_in_gateway") or {}
    if seen:
        lines += [
            "The recording gateway's recorder after the load (`/readyz`): "
            + ", ".join(
                f"{k.replace('_', ' ')} {v:,}"
                if isinstance(v, int)
                else f"{k.replace('_', ' ')} {v}"
                for k, v in seen.items()
                if v != ""
            )
            + ".",
            "",
        ]
    if rate:
        lines += [
            "### The recorder's sustained write rate",
            "",
            "`bench.recorder_rate`: `aibridged.recorder.Recorder` (as the gateway builds it) "
            "straight against the bench's PostgreSQL, in a database of its own, pinned to the "
            "gateway's CPU. Each interception: a start (group commit, awaited), a token usage, a "
            "prompt and a tool row, the end; the clock runs until every end and row is written. "
            "`start wait` = how long a start waited for its group commit with the others in "
            "flight; `start alone` = a start committed by itself (one in flight, as at "
            "concurrency 1).",
            "",
            table(WRITER_HEADERS, writer_rows(rate)),
            "",
        ]
        if rate.get("postgres_settings"):
            lines += [
                "PostgreSQL: "
                + ", ".join(f"`{k} = {v}`" for k, v in rate["postgres_settings"].items())
                + ".",
                "",
            ]
        if "command" in rate:
            lines += [f"`{rate['command']}`", ""]
    return lines


STEADY_HEADERS = ("path", "req/s", "CPU ms/req", "CPU %", "p50 ms", "errors")


def _run_rows(measured: dict[str, Any]) -> list[list[Any]]:
    """Each run of an on/off comparison (bench.recording_steady), then the medians."""
    rows = [
        [r["path"], r["rps"], r["cpu_ms_per_request"], r["cpu_pct"], r["p50_ms"], r["errors"]]
        for r in measured["runs"]
    ]
    for path in ("gateway", "gateway_norec"):
        rows.append([f"{path}, median", measured[f"{path}_rps"],
                     measured[f"{path}_cpu_ms_per_request"], measured[f"{path}_cpu_pct"],
                     measured[f"{path}_p50_ms"], "-"])  # fmt: skip
    return rows


def _delayed_lines(delayed: dict[str, Any]) -> list[str]:
    """The delayed JSON answer's runs (bench.recording_steady), each one, then the medians."""
    if not delayed:
        return []
    return [
        f"### JSON answered {delayed['delay_s'] * 1000:g} ms after each request",
        "",
        f"`bench.recording_steady`: the 40 KB Chat Completions request (blocking) to the delayed "
        f"answer (each request answered {delayed['delay_s'] * 1000:g} ms after it arrived, on "
        f"its own), {delayed['connections']} connections, {delayed['duration_s']:g} s runs, "
        f"{delayed['rounds']} rounds of recording on and off (order swapped every other round). "
        "`CPU ms/req` from the gateway's process CPU time. Requests per second, on ÷ off: "
        f"**{delayed['recording_ratio']}**"
        + (
            ""
            if delayed["saturated"]
            else " (a recording run left its CPU idle: not what limited the rate)"
        )
        + ".",
        "",
        table(STEADY_HEADERS, _run_rows(delayed)),
        "",
    ]


def _steady_lines(steady: dict[str, Any]) -> list[str]:
    """The steady stream's runs (bench.recording_steady), each one, then the medians."""
    if not steady:
        return []
    rows = _run_rows(steady)
    return [
        "### SSE whose events arrive 20 ms apart",
        "",
        f"`bench.recording_steady`: the 75 KB Messages stream request to the steady upstream "
        f"({steady['deltas']} text deltas {steady['interval_s'] * 1000:g} ms apart, each event "
        f"its own read), {steady['connections']} streams at a time, {steady['duration_s']:g} s "
        f"runs, {steady['rounds']} rounds of recording on and off (order swapped every other "
        "round). `CPU ms/req` from the gateway's process CPU time. Streams per CPU-second, on ÷ "
        f"off: **{steady['recording_ratio']}**"
        + ("" if steady["below_saturation"] else " (a run was saturated: not comparable)")
        + ".",
        "",
        table(STEADY_HEADERS, rows),
        "",
    ]
