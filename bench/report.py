"""Machine facts, targets, observations, the printed tables and the results files."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

# SPEC.md §14, concurrency 1.
TARGETS = {"added_p50_ms": 1.5, "added_p99_ms": 5.0, "ttfb_added_p50_ms": 2.0}
PACKAGES = ("aibridged", "trio", "hypercorn", "httpx2", "httpcore2", "h11", "structlog")


# --- facts ---------------------------------------------------------------------------------------


def _first_line_value(path: str, prefix: str) -> str | None:
    try:
        with open(path) as file:
            for line in file:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return None
    return out.stdout.rstrip() if out.returncode == 0 else None


def source_state(repo: Path) -> dict[str, Any]:
    """What code is measured: the commit, the uncommitted changes, and a hash of the package's
    files as they are on disk (the tree may change while others work in it)."""
    digest = hashlib.sha256()
    package = repo / "aibridged"
    for path in sorted(package.rglob("*")):
        if path.suffix in (".py", ".sql") and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes())
    dirty = _git("status", "--porcelain") or ""
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "uncommitted": dirty.splitlines(),
        "aibridged_sha256": digest.hexdigest(),
    }


def machine_facts(tools: dict[str, str | None]) -> dict[str, Any]:
    mem_total = _first_line_value("/proc/meminfo", "MemTotal")
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _first_line_value("/proc/cpuinfo", "model name") or platform.processor(),
        "ram_mib": int(mem_total.split()[0]) // 1024 if mem_total else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "tools": tools,
    }


# --- verdicts and observations -------------------------------------------------------------------


def evaluate_targets(latency: dict[str, Any]) -> dict[str, Any]:
    """The worst blocking API against the added-latency targets; the stream against TTFB."""
    blocking = [result for name, result in latency.items() if name != "messages_stream"]
    values = {
        "added_p50_ms": max(r["added_ms"]["p50"] for r in blocking),
        "added_p99_ms": max(r["added_ms"]["p99"] for r in blocking),
        "ttfb_added_p50_ms": latency["messages_stream"]["added_ms"]["p50"],
    }
    return {
        key: {
            "value": round(value, 3),
            "limit": TARGETS[key],
            "verdict": "PASS" if value <= TARGETS[key] else "FAIL",
        }
        for key, value in values.items()
    }


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
        disturbed = [
            f"{r['kind']} c={r['connections']} round {r['round']} {r['path']} "
            f"({r['cpu_pct'][f'cpu{core}_busy'] - r['cpu_pct'].get('gateway', 0.0):.0f} %)"
            for r in results["throughput_runs"]
            if r["cpu_pct"].get(f"cpu{core}_busy", 0.0) - r["cpu_pct"].get("gateway", 0.0) > 15
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
    if results["config"]["generator"] != "wrk":
        notes.append("wrk was not found: the Python generator was used; it may bound both paths.")
    if not results["config"]["pinned"]:
        notes.append("Nothing was pinned (taskset or a second CPU is missing).")
    return notes


# --- tables --------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        text = f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        return text.rstrip("0").removesuffix(".")
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (also readable as plain text): first column left, the rest right."""
    cells = [list(headers), *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)]
    return "\n".join([line(cells[0]), "|" + "|".join(rule) + "|", *(line(r) for r in cells[1:])])


LATENCY_HEADERS = (
    "concurrency 1 (ms)",
    "n/path",
    "direct p50",
    "p90",
    "p99",
    "gateway p50",
    "p90",
    "p99",
    "added p50",
    "added p99",
    "paired d p50",
    "paired d p99",
    "errors",
)


def latency_rows(latency: dict[str, Any]) -> list[list[Any]]:
    labels = {
        "chat": "chat, blocking",
        "messages": "messages, blocking",
        "messages_stream": "messages stream, TTFB",
    }
    rows: list[list[Any]] = []
    for name, r in latency.items():
        d, g, a, p = r["direct_ms"], r["gateway_ms"], r["added_ms"], r.get("paired_diff_ms") or {}
        rows.append(
            [
                f"{labels.get(name, name)} ({r['body_bytes'] // 1000} KB)",
                r["samples"]["gateway"],
                *(d["p50"], d["p90"], d["p99"]),
                *(g["p50"], g["p90"], g["p99"]),
                *(a["p50"], a["p99"]),
                *(p.get("p50", float("nan")), p.get("p99", float("nan"))),
                r["errors"]["direct"] + r["errors"]["gateway"],
            ]
        )
    return rows


THROUGHPUT_HEADERS = (
    "saturated",
    "direct req/s",
    "gateway req/s",
    "gw/direct",
    "direct range",
    "gw range",
    "direct p99 ms",
    "gw p99 ms",
    "gw CPU %",
    "gw CPU ms/req",
    "upstream CPU %",
    "loadgen CPU %",
    "errors",
)


def throughput_rows(summary: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            f"{'JSON chat' if s['kind'] == 'json' else 'SSE messages'} c={s['connections']}",
            s["direct_rps"],
            s["gateway_rps"],
            s["ratio"],
            s["direct_rps_range"],
            s["gateway_rps_range"],
            s["direct_p99_ms"],
            s["gateway_p99_ms"],
            s["gateway_cpu_pct"],
            s["gateway_cpu_ms_per_request"],
            s["upstream_cpu_pct_gateway_run"],
            s["generator_cpu_pct_gateway_run"],
            s["errors"],
        ]
        for s in summary
    ]


def memory_rows(memory: dict[str, Any]) -> list[list[Any]]:
    return [
        [when.replace("_", " "), m["rss_kb"] / 1024, m["peak_rss_kb"] / 1024]
        for when, m in memory.items()
    ]


def _function_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[r.get("function") or r.get("package"), r["samples"], r["pct"]] for r in rows]


# --- outputs -------------------------------------------------------------------------------------


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
        "targets: "
        + "; ".join(
            f"{k} {v['value']:.3f} <= {v['limit']}: {v['verdict']}" for k, v in targets.items()
        ),
    ]
    for kind, profile in (results.get("profile") or {}).items():
        if profile.get("samples"):
            parts += [
                "",
                f"py-spy, gateway under {kind} load, own time ({profile['samples']} samples):",
                table(("function", "samples", "%"), _function_rows(profile["own"][:12])),
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
        f"- Upstream: {c['upstream_description']}.",
        f"- Gateway: `{c['gateway_command']}` (embedded PostgreSQL, log level "
        f"{c['gateway_log_level']}, ready in {c['gateway_startup_s']} s, exit code "
        f"{c['gateway_exit_code']}).",
        f"- Bodies: Anthropic Messages {sizes['anthropic_messages']['bytes_blocking']:,} B with "
        f"{sizes['anthropic_messages']['tools']} tools; OpenAI Chat "
        f"{sizes['openai_chat']['bytes_blocking']:,} B with {sizes['openai_chat']['tools']} tools.",
        "",
        "## Targets (SPEC §14, concurrency 1)",
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
        table(("package", "samples", "%"), _function_rows(profile["own_by_package"])),
        "",
        "Top functions by own time:",
        "",
        table(("function", "samples", "%"), _function_rows(profile["own"])),
        "",
        "The gateway's own functions by inclusive time (which hot-path step the time is in):",
        "",
        table(("function", "samples", "%"), _function_rows(profile["aibridged_inclusive"])),
        "",
        "Top functions by inclusive time (frames on nearly every stack left out):",
        "",
        table(("function", "samples", "%"), _function_rows(profile["inclusive"])),
        "",
    ]


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2) + "\n")
