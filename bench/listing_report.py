"""The listing bench's report in Markdown: the same numbers as its JSON, readable.

python -m bench.listing_report RESULTS.json   # writes RESULTS.md again
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

STATEMENTS = ("count", "cursor_lookup", "page_first", "children_first", "page_deep",
              "children_deep")  # fmt: skip
_TABLE_DAY = re.compile(r"_(\d{8}|default)$")


def _ms(summary: dict[str, Any] | None, key: str) -> str:
    return "—" if not summary else f"{summary[key]:.1f}"


def _pass(flag: bool | None) -> str:
    return "—" if flag is None else ("PASS" if flag else "FAIL")


def _header(r: dict[str, Any]) -> list[str]:
    machine, source, database = r["machine"], r["source"], r["database"]
    dirty = ", ".join(source["uncommitted"]) or "none"
    settings = ", ".join(f"{k} {v}" for k, v in database["settings"].items())
    pinned = "unpinned" if r["database_cpu"] is None else f"pinned to CPU {r['database_cpu']}"
    return [
        f"# Interceptions listing at scale, {r['date'][:10]}",
        "",
        f"- command: `{r['command']}` ({r['seconds']:.0f} s in all)",
        f"- machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['ram_mib']} MiB, "
        f"Linux {machine['kernel']}, Python {machine['python']}; calibration loop "
        f"{r['calibration_ms']['start']} ms at the start, {r['calibration_ms']['end']} ms at the "
        "end (≈4.5 fast, ≈9 slow)",
        f"- code: {source['git_commit']}, uncommitted: {dirty}; aibridged sha256 "
        f"{source['aibridged_sha256'][:16]}",
        f"- PostgreSQL {database['postgres_version']} (embedded, {pinned}): {settings}",
        "",
    ]


def _data(r: dict[str, Any]) -> list[str]:
    database, fill = r["database"], r["fill"]
    lines = ["## Data", "", "| table | rows | table MiB | indexes MiB |", "|---|---:|---:|---:|"]
    for table, rows in database["rows"].items():
        size = database["sizes"][table]
        lines.append(f"| {table} | {rows:,} | {size['table_mib']} | {size['indexes_mib']} |")
    steps = ", ".join(f"{k} {v} s" for k, v in fill["steps"].items() if k != "total")
    migrations = r["migrations_after_fill"]
    lines += [
        "",
        f"{fill['interceptions']:,} interceptions over {fill['days']} days (until "
        f"{str(fill['end_at'])[:16]}), {fill['users']} users; "
        f"{database['interceptions_partitions']} partitions of aibridge_interceptions (the days, "
        "the days ahead the daemon creates, DEFAULT).",
        "",
        f"Fill (schema version {fill['schema_version']}): **{fill['steps']['total']} s** "
        f"({steps}).",
    ]
    if migrations["versions"]:
        lines.append(
            f"Migrations {migrations['versions']} applied on the filled tables: "
            f"**{migrations['seconds']} s**."
        )
    lines += ["", "Indexes of aibridge_interceptions:", ""]
    lines += [f"- `{definition}`" for definition in database["interceptions_indexes"].values()]
    return [*lines, ""]


def _pages(r: dict[str, Any]) -> list[str]:
    shape = r["shape"]
    lines = [
        "## Pages",
        "",
        f"`list_interceptions` through the store, the count and a page of {shape['limit']} in "
        f"one transaction as the API runs them, rows decoded; {shape['runs']} timed rounds after "
        "one untimed, every query once a round. Deep: `after` = the id of the row the deep "
        "page starts after. Target: p95 ≤ 100 ms, each page.",
        "",
        "| query | values | count | first p50 | first p95 | deep after | deep p50 | deep p95 "
        "| first | deep |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for q in r["queries"]:
        deep_after = "—" if q["deep_after_rows"] is None else f"{q['deep_after_rows']:,}"
        count = f"{q['count']:,}" + ("+ (capped)" if q.get("count_capped") else "")
        lines.append(
            f"| {q['name']} | {q['values']} | {count} | {_ms(q['first_page'], 'p50_ms')} "
            f"| {_ms(q['first_page'], 'p95_ms')} | {deep_after} "
            f"| {_ms(q['deep_page'], 'p50_ms')} | {_ms(q['deep_page'], 'p95_ms')} "
            f"| {_pass(q['first_pass'])} | {_pass(q['deep_pass'])} |"
        )
    return [*lines, ""]


def _access(mode: dict[str, Any]) -> str:
    paths = "; ".join(f"{k} x{v}" for k, v in mode["access"].items())
    return f"{mode['planning_ms']:.1f} + {mode['execution_ms']:.1f} ms: {paths}"


def _reading(mode: dict[str, Any]) -> str:
    scans = mode["seq_scan_interceptions"]
    if not scans:
        return "none"
    rows = sum(s["rows_read"] for s in scans)
    return f"{len(scans)} partition{'s' if len(scans) > 1 else ''}, {rows:,} rows"


def _explain(r: dict[str, Any]) -> list[str]:
    lines = [
        "## EXPLAIN (ANALYZE, BUFFERS)",
        "",
        "Each statement prepared and executed with its custom plan and with its generic plan "
        "(planning + execution ms). Access: how the recording tables' partitions were read (xN: "
        "on N partitions). A sequential scan of an empty partition (DEFAULT, the days ahead) reads "
        "nothing and is counted apart.",
        "",
        "| query | statement | custom plan | generic plan | Seq Scan reading interceptions "
        "(custom / generic) | on empty partitions | other tables' Seq Scans |",
        "|---|---|---|---|---|---:|---|",
    ]
    for q in r["queries"]:
        for name in STATEMENTS:
            modes = q["explain"].get(name)
            if modes is None:
                continue
            empty = max(m["seq_scan_empty_partitions"] for m in modes.values())
            others = {t for m in modes.values() for t in m["seq_scan_other_tables"]}
            lines.append(
                f"| {q['name']} | {name} | {_access(modes['custom'])} "
                f"| {_access(modes['generic'])} "
                f"| {_reading(modes['custom'])} / {_reading(modes['generic'])} | {empty} "
                f"| {_others(others)} |"
            )
    lines += ["", "| query | no Seq Scan reading interceptions |", "|---|---|"]
    lines += [f"| {q['name']} | {_pass(q['explain_ok'])} |" for q in r["queries"]]
    return [*lines, ""]


def _others(tables: set[str]) -> str:
    """Other tables' sequential scans, partitions folded into their table."""
    folded = sorted({_TABLE_DAY.sub("", t) for t in tables})
    return ", ".join(folded) or "—"


def _distinct(r: dict[str, Any]) -> list[str]:
    lines = ["## `/models` and `/clients` (informational, not a target)", ""]
    for name, summary in r["distinct_values"].items():
        lines.append(f"- {name}: p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms")
    return [*lines, ""]


def render_markdown(r: dict[str, Any]) -> str:
    return "\n".join([*_header(r), *_data(r), *_pages(r), *_explain(r), *_distinct(r)])


if __name__ == "__main__":
    source = Path(sys.argv[1])
    source.with_suffix(".md").write_text(render_markdown(json.loads(source.read_text())))
