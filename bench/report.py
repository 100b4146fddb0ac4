"""Observations, the printed summary, the Markdown report and the JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.report_sections import (
    TARGET_HEADERS,
    database_line,
    litellm_line,
    litellm_section,
    machine_state_line,
    recording_section,
    streams_section,
    targets_section,
)
from bench.tables import (
    LATENCY_HEADERS,
    LITELLM_THROUGHPUT_HEADERS,
    RECORDING_LATENCY_HEADERS,
    RECORDING_THROUGHPUT_HEADERS,
    STREAMS_HEADERS,
    THROUGHPUT_HEADERS,
    WRITER_HEADERS,
    bench_target_rows,
    function_rows,
    latency_rows,
    litellm_throughput_rows,
    memory_rows,
    recording_latency_rows,
    recording_throughput_rows,
    streams_rows,
    table,
    throughput_rows,
    writer_rows,
)
from bench.tracing_cost import tracing_section


def observations(results: dict[str, Any]) -> list[str]:
    """Facts worth a reader's attention, derived from the numbers."""
    notes: list[str] = []
    for s in results["throughput_summary"]:
        label = f"{s['kind']} c={s['connections']}"
        if s["errors"]:
            notes.append(f"{label}: {s['errors']} errors under load.")
        if s["gateway_cpu_pct"] < 90:
            notes.append(
                f"{label}: the gateway used only {s['gateway_cpu_pct']:.0f} % of its core, so the "
                "gateway number may be bound by what runs on CPU 0 (upstream, load generator)."
            )
        if s["upstream_cpu_pct_gateway_run"] + s["generator_cpu_pct_gateway_run"] > 80:
            notes.append(
                f"{label}: CPU 0 was busy during the gateway run (upstream "
                f"{s['upstream_cpu_pct_gateway_run']:.0f} %, generator "
                f"{s['generator_cpu_pct_gateway_run']:.0f} %): the gateway may be under-driven."
            )
    direct_bound = [
        f"{s['kind']} c={s['connections']}"
        for s in results["throughput_summary"]
        if s["upstream_cpu_pct_direct_run"] + s["generator_cpu_pct_direct_run"] >= 90
    ]
    if direct_bound:
        notes.append(
            "Direct runs (" + ", ".join(direct_bound) + ") saturate CPU 0, which the fake upstream "
            "shares with the load generator: 'direct req/s' is that core's capacity, so "
            "'gw/direct' compares one gateway core with one upstream+generator core."
        )
    for name, r in results["latency"].items():
        if r["reconnects"]["gateway"] > r["reconnects"]["direct"]:
            notes.append(
                f"{name}: the gateway closed the measuring client's keep-alive connection "
                f"{r['reconnects']['gateway']} times in {r['samples']['gateway']:,} requests "
                "(reconnected outside the timed part)."
            )
    if results["source"]["aibridged_sha256"] != results["source_at_end"]["aibridged_sha256"]:
        notes.append(
            "aibridged/ changed on disk during the run: the gateway ran the code as it was at its "
            "start (`source`), not as it was at the end (`source_at_end`)."
        )
    speeds = results["calibration_ms"]
    for core in sorted({core for when in speeds.values() for core in when}):
        points = {moment: cores[core] for moment, cores in speeds.items() if core in cores}
        if max(points.values()) > 1.15 * min(points.values()):
            notes.append(
                f"{core} changed speed during the run: the calibration loop took "
                + ", ".join(f"{v} ms {moment.replace('_', ' ')}" for moment, v in points.items())
                + " (lower is faster)."
            )
    busy = {k: v for k, v in results["background_cpu_busy_pct_at_start"].items() if v >= 10}
    if busy:
        notes.append(f"The machine was already busy at the start (% per CPU): {busy}.")
    core = results["config"]["gateway_cpu"]
    if core is not None:
        for name, r in results["latency"].items():
            other = r["cpu_pct"].get(f"cpu{core}_busy", 0.0) - r["cpu_pct"].get("gateway", 0.0)
            if other > 10:
                notes.append(
                    f"{name} (concurrency 1): other work used {other:.0f} % of CPU {core} (the "
                    "gateway's) while it was measured; its tail numbers are suspect."
                )

        db_here = (results["config"].get("database") or {}).get("cpu") == core

        def other(r: dict[str, Any]) -> float:
            cpu = r["cpu_pct"]
            measured = sum(cpu.get(p, 0.0) for p in ("gateway", "gateway_norec", "litellm"))
            measured += cpu.get("postgres", 0.0) if db_here else 0.0
            return float(cpu.get(f"cpu{core}_busy", 0.0) - measured)

        disturbed = [
            f"{r['kind']} c={r['connections']} round {r['round']} {r['path']} ({other(r):.0f} %)"
            for r in results["throughput_runs"]
            if other(r) > 15
        ]
        if disturbed:
            notes.append(
                f"Other work used CPU {core} (the gateway's) during: " + "; ".join(disturbed) + "."
            )
        else:
            notes.append(
                f"No other work showed on CPU {core} (the gateway's) during the load runs."
            )
    rss = [run["gateway_rss_kb_after"] for run in results["throughput_runs"]]
    if rss:
        notes.append(
            "Gateway RSS after each saturated run (MiB): "
            + ", ".join(f"{kb / 1024:.0f}" for kb in rss)
            + "."
        )
    if any(not check["identical"] for check in results["relay_check"].values()):
        notes.append("Some responses through the gateway differ from the direct ones (bytes).")
    if any(not check.get("norec_identical", True) for check in results["relay_check"].values()):
        notes.append("Some responses differ between recording on and off (bytes).")
    notes += _recording_notes(results)
    notes += _litellm_notes(results) + _streams_notes(results)
    if results["config"]["generator"] != "wrk":
        notes.append("wrk was not found: the Python generator was used; it may bound both paths.")
    if not results["config"]["pinned"]:
        notes.append("Nothing was pinned (taskset or a second CPU is missing).")
    return notes


def _recording_notes(results: dict[str, Any]) -> list[str]:
    notes = []
    seen = results.get("recorder_in_gateway") or {}
    if seen.get("error"):
        notes.append(f"The recording gateway's /readyz did not answer: {seen['error']}.")
    elif seen.get("dropped"):
        notes.append(
            f"The recording gateway's recorder dropped {seen['dropped']:,} rows under load "
            f"(queue full; last error `{seen.get('last_error') or '-'}`)."
        )
    elif seen and not seen.get("rows_written"):
        notes.append(
            "The recording gateway wrote interception starts and ends but no child rows (token "
            "usage, prompts, tools): nothing was extracted from these answers."
        )
    db = results["config"].get("database") or {}
    for s in results["throughput_summary"]:
        cpu0 = s.get("postgres_cpu_pct_gateway_run", 0.0) + s["upstream_cpu_pct_gateway_run"]
        if db.get("cpu") == 0 and cpu0 + s["generator_cpu_pct_gateway_run"] > 80:
            notes.append(
                f"{s['kind']} c={s['connections']}: CPU 0 (upstream, generator, PostgreSQL) was "
                f"busy during the recording-on runs ({cpu0:.0f} % upstream + PostgreSQL): the "
                "recording gateway may be under-driven."
            )
    rss = [run["gateway_norec_rss_kb_after"] for run in results["throughput_runs"]
           if "gateway_norec_rss_kb_after" in run]  # fmt: skip
    if rss:
        notes.append(
            "Recording-off gateway RSS after each saturated run (MiB): "
            + ", ".join(f"{kb / 1024:.0f}" for kb in rss)
            + "."
        )
    return notes


def _litellm_notes(results: dict[str, Any]) -> list[str]:
    lm = results["litellm"]
    if not lm["up"]:
        return [f"LiteLLM was not measured: {lm['error']}."]
    notes = []
    for s in results["throughput_summary"]:
        if s.get("litellm_errors"):
            notes.append(
                f"{s['kind']} c={s['connections']}: LiteLLM had {s['litellm_errors']} errors."
            )
        idle = s.get("litellm_cpu_pct_in_gateway_runs", 0.0)
        if idle > 5:
            notes.append(
                f"{s['kind']} c={s['connections']}: idle LiteLLM used {idle:.0f} % of CPU 1 "
                "during the gateway runs."
            )
    return notes


def _streams_notes(results: dict[str, Any]) -> list[str]:
    notes = []
    for via, r in (results.get("streams") or {}).items():
        if "error" in r:
            notes.append(f"Streams via {via} failed: {r['error']}")
        elif r["peak_open"] < r["streams"]:
            notes.append(
                f"Streams via {via}: only {r['peak_open']:,} of {r['streams']:,} were open at "
                f"the same time (the last opened {r['first_byte_ms']['max'] / 1000:.1f} s after "
                "asking; the first ones had ended by then)."
            )
    return notes


def render_text(results: dict[str, Any]) -> str:
    m, c = results["machine"], results["config"]
    targets = results["targets"]
    parts = [
        f"aibridged hot-path bench, {results['date']}: {m['nproc']} x {m['cpu_model']}, "
        f"Python {m['python']}; upstream {c['upstream']}, generator {c['generator']}",
        f"{c['pinning']}",
        "",
        table(LATENCY_HEADERS, latency_rows(results["latency"])),
        "",
        table(THROUGHPUT_HEADERS, throughput_rows(results["throughput_summary"])),
        "",
        table(("gateway RSS", "MiB", "peak MiB"), memory_rows(results["memory"])),
        "",
        table(LITELLM_THROUGHPUT_HEADERS, litellm_throughput_rows(results["throughput_summary"])),
        "",
        table(
            RECORDING_LATENCY_HEADERS,
            recording_latency_rows(results.get("latency_recording") or {}),
        ),
        "",
        table(
            RECORDING_THROUGHPUT_HEADERS, recording_throughput_rows(results["throughput_summary"])
        ),
        "",
        table(WRITER_HEADERS, writer_rows(results.get("recorder_rate") or {})),
        "",
        table(STREAMS_HEADERS, streams_rows(results.get("streams") or {})),
        "",
        table(TARGET_HEADERS, bench_target_rows(results["bench_targets"])),
        "",
        "targets: "
        + "; ".join(
            f"{k} {v['value']:.3f} <= {v['limit']}: {v['verdict']}" for k, v in targets.items()
        ),
    ]
    if not results["litellm"]["up"]:
        parts.insert(2, f"LiteLLM NOT MEASURED: {results['litellm']['error']}")
    for kind, profile in (results.get("profile") or {}).items():
        if profile.get("samples"):
            parts += [
                "",
                f"py-spy, gateway under {kind} load, own time ({profile['samples']} samples):",
                table(("function", "samples", "%"), function_rows(profile["own"][:12])),
            ]
        elif profile.get("error"):
            parts += ["", f"{kind} profile skipped: {profile['error']}"]
    return "\n".join(parts)


def render_markdown(results: dict[str, Any]) -> str:
    m, c, src = results["machine"], results["config"], results["source"]
    sizes = c["payloads"]
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    tools = ", ".join(f"{k} {v}" for k, v in m["tools"].items() if v and k != "taskset")
    lines = [
        f"# aibridged hot-path bench, {results['date']}",
        "",
        f"`{results['command']}`"
        + (f" (`{results['make_target']}`)" if results["make_target"] else "")
        + f", {results['elapsed_s']:.0f} s. "
        f"All numbers: `{Path(results['files']['json']).name}`.",
        "",
        f"- Machine: {m['nproc']} x {m['cpu_model']}, {m['ram_mib']:,} MiB RAM, Linux "
        f"{m['kernel']}, Python {m['python']}; {packages}; {tools}.",
        f"- Code: commit `{src['git_commit'] or 'unknown'}`"
        + (
            " plus uncommitted changes: " + ", ".join(f"`{line}`" for line in src["uncommitted"])
            if src["uncommitted"]
            else ""
        )
        + f"; aibridged/ sha256 `{src['aibridged_sha256'][:16]}`.",
        f"- Pinning: {c['pinning']}.",
        "- Machine speed (shared VM): a fixed pure-Python loop took, in ms, "
        + "; ".join(
            f"{when.replace('_', ' ')} " + ", ".join(f"{core} {ms}" for core, ms in cores.items())
            for when, cores in results["calibration_ms"].items()
        )
        + ". Lower is faster; scale other runs by it.",
        machine_state_line(results),
        f"- Upstream: {c['upstream_description']}.",
        f"- Gateway: `{c['gateway_command']}` (recording on, the default; log level "
        f"{c['gateway_log_level']}, ready in {c['gateway_startup_s']} s, exit code "
        f"{c['gateway_exit_code']}).",
        database_line(results),
        f"- Bodies: Anthropic Messages {sizes['anthropic_messages']['bytes_blocking']:,} B with "
        f"{sizes['anthropic_messages']['tools']} tools; OpenAI Chat "
        f"{sizes['openai_chat']['bytes_blocking']:,} B with {sizes['openai_chat']['tools']} tools; "
        f"OpenAI Responses {sizes['openai_responses']['bytes_blocking']:,} B with "
        f"{sizes['openai_responses']['tools']} tools.",
        litellm_line(results),
        f"- Open-file limit of the bench and every process it starts: {c['nofile_limit']:,}.",
        "",
        *targets_section(results),
        "## Targets (docs/performance.md, concurrency 1)",
        "",
        table(
            ("target", "measured", "limit", "verdict"),
            [[k, v["value"], v["limit"], v["verdict"]] for k, v in results["targets"].items()],
        ),
        "",
        "## Concurrency 1, interleaved request by request",
        "",
        f"{c['latency_requests_per_path']:,} timed requests per path after "
        f"{c['latency_warmup_pairs']} warm-up pairs, same body on both paths. `added` = gateway "
        "percentile - direct percentile; `paired d` = percentile of the per-pair differences. The "
        "stream row times the first complete SSE event.",
        "",
        table(LATENCY_HEADERS, latency_rows(results["latency"])),
        "",
        f"## Saturated closed loop ({c['rounds']} rounds of {c['duration_s']:g} s after "
        f"{c['warmup_s']:g} s warm-up, medians; generator {c['generator']}, keep-alive)",
        "",
        table(THROUGHPUT_HEADERS, throughput_rows(results["throughput_summary"])),
        "",
        "CPU columns: % of one core during the gateway runs; `gw CPU ms/req` = gateway CPU time "
        "per request.",
        "",
        *recording_section(results),
        *tracing_section(results),
        *litellm_section(results),
        *streams_section(results),
        "## Gateway memory",
        "",
        table(("when", "RSS MiB", "peak RSS MiB"), memory_rows(results["memory"])),
        "",
    ]
    for kind, profile in (results.get("profile") or {}).items():
        lines += _profile_section(kind, profile)
    if results["observations"]:
        lines += ["## Observations", "", *(f"- {note}" for note in results["observations"]), ""]
    return "\n".join(lines)


def _profile_section(kind: str, profile: dict[str, Any]) -> list[str]:
    if not profile.get("samples"):
        return [f"## Profile, {kind}", "", f"Skipped: {profile.get('error', 'no samples')}", ""]
    return [
        f"## Profile, {kind}: py-spy at {profile['rate_hz']} Hz for {profile['duration_s']} s, "
        f"gateway under {profile['load']} load, c={profile['connections']} "
        f"({profile['samples']} samples, {profile['rps_while_profiled']} req/s while profiled)",
        "",
        f"Flamegraph `{Path(profile['svg']).name}`, collapsed stacks "
        f"`{Path(profile['raw']).name}`.",
        "",
        "Own time by package:",
        "",
        table(("package", "samples", "%"), function_rows(profile["own_by_package"])),
        "",
        "Top functions by own time:",
        "",
        table(("function", "samples", "%"), function_rows(profile["own"])),
        "",
        "Recording's share (samples whose stack is in recording's code; a sample counts once "
        "per row):",
        "",
        table(("recording", "samples", "%"), function_rows(profile.get("recording_inclusive", []))),
        "",
        "The gateway's own functions by inclusive time (which hot-path step the time is in):",
        "",
        table(("function", "samples", "%"), function_rows(profile["aibridged_inclusive"])),
        "",
        "Top functions by inclusive time (frames on nearly every stack left out):",
        "",
        table(("function", "samples", "%"), function_rows(profile["inclusive"])),
        "",
    ]


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2) + "\n")
