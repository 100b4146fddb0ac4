"""The retention bench's report in Markdown: the same numbers as its JSON, readable.

python -m bench.retention_report RESULTS.json   # writes RESULTS.md again
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TARGET_RATIO = 1.2  # p99 with the sweep ÷ p99 without (docs/performance.md)


def _header(r: dict[str, Any]) -> list[str]:
    machine, source = r["machine"], r["source"]
    dirty = ", ".join(source["uncommitted"]) or "none"
    return [
        f"# Retention sweep under a recording load, {r['date'][:10]}",
        "",
        f"- command: `{r['command']}` ({r['seconds']:.0f} s in all)",
        f"- machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['ram_mib']} MiB, "
        f"Linux {machine['kernel']}, Python {machine['python']}; calibration loop "
        f"{r['calibration_ms']['start']} ms at the start, {r['calibration_ms']['end']} ms at the "
        "end (≈4.5 fast, ≈9 slow)",
        f"- code: {source['git_commit']}, uncommitted: {dirty}; aibridged sha256 "
        f"{source['aibridged_sha256'][:16]}",
        "- PostgreSQL (embedded), the fast upstream and the load generator pinned to CPU 0; the "
        "gateway (`aibridged serve`, recording on) to CPU 1",
        "",
    ]


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _verdicts(r: dict[str, Any]) -> tuple[list[str], dict[str, float]]:
    base = r["without"]["window"]["latency_ms"]
    ratios = {
        "p99 with ÷ without (whole windows)": _ratio(
            r["with"]["window"]["latency_ms"]["p99"], base["p99"]
        ),
        "p99 while the sweep ran ÷ without": _ratio(
            r["during_sweep"]["latency_ms"].get("p99", float("nan")), base["p99"]
        ),
        "p50 with ÷ without (whole windows)": _ratio(
            r["with"]["window"]["latency_ms"]["p50"], base["p50"]
        ),
    }
    sweep, after, plan = r["sweep"], r["after"], r["plan"]
    left = sum(after["older_than_cutoff"].values())
    lines = ["## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    for name, value in ratios.items():
        verdict = "" if name.startswith("p50") else ("PASS" if value <= TARGET_RATIO else "FAIL")
        limit = f"≤ {TARGET_RATIO}" if verdict else "(for reference)"
        lines.append(f"| {name} {limit} | {value:.2f} | {verdict} |")
    removed = sweep["purged"].get("interception", 0)
    lines += [
        f"| old interceptions removed ≥ 1,000,000 | {removed:,} | "
        f"{'PASS' if removed >= 1_000_000 else 'FAIL (a smaller run)'} |",
        f"| rows older than the cutoff left (all tables) = 0 | {left:,} | "
        f"{'PASS' if left == 0 else 'FAIL'} |",
        f"| kept interceptions (and their usages) still there = {plan['kept']:,} | "
        f"{after['kept']:,} ({after['kept_token_usages']:,}) | "
        f"{'PASS' if after['kept'] == after['kept_token_usages'] == plan['kept'] else 'FAIL'} |",
        "",
    ]
    return lines, ratios


def _latency(r: dict[str, Any]) -> list[str]:
    lines = [
        "## The data plane",
        "",
        "| window | requests | req/s | errors | p50 ms | p90 ms | p99 ms | max ms | gateway CPU "
        "| PostgreSQL CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, title in (("without", "without the sweep"), ("with", "with the sweep")):
        phase = r[key]
        window, load = phase["window"], phase["load"]
        ms = window["latency_ms"]
        lines.append(
            f"| {title} | {window['requests']:,} | {load['rps']:,.0f} | "
            f"{sum(load['errors'].values())} | {ms['p50']:.2f} | {ms['p90']:.2f} | "
            f"{ms['p99']:.2f} | {ms['max']:.1f} | {phase['gateway_cpu_pct']:.0f} % | "
            f"{phase['database_cpu_pct']:.0f} % |"
        )
    during = r["during_sweep"]
    ms = during["latency_ms"]
    if ms:
        lines.append(
            f"| requests started while the sweep ran | {during['requests']:,} | | | "
            f"{ms['p50']:.2f} | {ms['p90']:.2f} | {ms['p99']:.2f} | {ms['max']:.1f} | | |"
        )
    load = r["load"]
    lines += [
        "",
        f"Load: {load['connections']} keep-alive connections, closed loop, {load['api']}, "
        f"{load['duration_s']:.0f} s per window (`bench.loadgen`'s trio generator). CPU is a "
        "share of one core over the window. The two windows ran back to back, "
        f"{r['late_s']} s behind schedule.",
        "",
    ]
    return lines


def _sweep(r: dict[str, Any]) -> list[str]:
    sweep, plan, before = r["sweep"], r["plan"], r["before"]
    took = sweep["end"] - sweep["start"]
    offset = sweep["start"] - r["with"]["start"]
    purged = ", ".join(f"{k} {v:,}" for k, v in sorted(sweep["purged"].items()))
    older = ", ".join(f"{k} {v:,}" for k, v in before["older_than_cutoff"].items())
    fill = r["fill_s"]
    inside = "inside" if sweep["inside_window"] else "**outlasting**"
    return [
        "## The sweep",
        "",
        f"- data: {plan['rows']:,} interceptions with their child records over {plan['days']} "
        f"days from {plan['first_day']} (the last one the boundary day, cut at "
        f"{plan['cutoff'][:19]}), filled in {fill['total']:.0f} s; rows older than the cutoff "
        f"before the sweep: {older}; {plan['kept']:,} interceptions after the cutoff to keep",
        f"- retention {plan['retention_s']} s (60 days ± 12 h: the cutoff falls at noon)",
        f"- the sweep started {offset:.1f} s into the loaded window and took **{took:.1f} s**, "
        f"{inside} the {r['load']['duration_s']:.0f} s window",
        f"- removed: {sweep['purged_total']:,} records ({purged})",
        f"- partitions dropped whole: {sweep['partitions_dropped']}; drops deferred to the next "
        f"sweep: {sweep['drops_deferred']}; failed sweeps: {sweep['failed_sweeps']}",
        f"- the gateway's log line: `{r['swept_log_line']}`",
        "",
    ]


def render_markdown(r: dict[str, Any]) -> str:
    verdicts, _ = _verdicts(r)
    lines = _header(r) + verdicts + _latency(r) + _sweep(r)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.retention_report RESULTS.json", file=sys.stderr)
        return 2
    path = Path(args[0])
    path.with_suffix(".md").write_text(render_markdown(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
