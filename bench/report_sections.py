"""The report's sections for the LiteLLM comparison, the many-open-streams scenario and the bench's
targets (Markdown; the printed summary uses the same tables)."""

from __future__ import annotations

from typing import Any

from bench.tables import (
    LITELLM_LATENCY_HEADERS,
    LITELLM_THROUGHPUT_HEADERS,
    STREAMS_HEADERS,
    bench_target_rows,
    litellm_latency_rows,
    litellm_throughput_rows,
    streams_rows,
    table,
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
