"""EXPLAIN (ANALYZE, BUFFERS) of the listing's statements, and whether they scan interceptions.

Each statement is the API's own (``aibridged.store.listing``'s builders), prepared and executed
under ``plan_cache_mode`` forced both ways: the custom plan (planned for these values, what the
first executions of a prepared statement get) and the generic plan (what PostgreSQL may switch
to after five executions of one of asyncpg's cached statements, as the API's are). Both must
avoid a sequential scan of the interceptions.

A ``Seq Scan`` node on an interceptions partition counts only if it read something: the planner
rightly scans an empty partition (the DEFAULT one, the days ahead) sequentially, and that costs
nothing. Such scans are counted apart, as ``empty``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

from aibridged.store.db import Connection
from aibridged.store.listing import Statement

INTERCEPTIONS = "aibridge_interceptions"
_PARTITION = re.compile(r"^(aibridge_[a-z_]+?)_(\d{8}|default)")  # a day's partition
MODES = {"custom": "force_custom_plan", "generic": "force_generic_plan"}


@dataclass(frozen=True, slots=True)
class SeqScan:
    relation: str
    loops: int
    rows_read: int  # returned plus removed by the filter, over every loop
    blocks: int  # shared buffers hit or read

    @property
    def empty(self) -> bool:
        return self.rows_read == 0 and self.blocks == 0


def seq_scans(plan: dict[str, Any]) -> list[SeqScan]:
    """Every Seq Scan node under ``plan`` that ran at least once."""
    found: list[SeqScan] = []
    todo = [plan]
    while todo:
        node = todo.pop()
        todo += node.get("Plans", [])
        loops = int(node.get("Actual Loops", 0))
        if node.get("Node Type") != "Seq Scan" or loops == 0:
            continue
        per_loop = float(node.get("Actual Rows", 0)) + float(node.get("Rows Removed by Filter", 0))
        found.append(
            SeqScan(
                relation=str(node.get("Relation Name")),
                loops=loops,
                rows_read=round(per_loop * loops),
                blocks=int(node.get("Shared Hit Blocks", 0))
                + int(node.get("Shared Read Blocks", 0)),
            )
        )
    return found


def verdict(plan: dict[str, Any]) -> dict[str, Any]:
    """What one plan says: times, and the sequential scans of interceptions and of the rest."""
    scans = seq_scans(plan["Plan"])
    on_interceptions = [s for s in scans if s.relation.startswith(INTERCEPTIONS)]
    reading = [s for s in on_interceptions if not s.empty]
    others = sorted({s.relation for s in scans if not s.relation.startswith(INTERCEPTIONS)})
    return {
        "planning_ms": round(float(plan.get("Planning Time", 0.0)), 3),
        "execution_ms": round(float(plan.get("Execution Time", 0.0)), 3),
        "seq_scan_interceptions": [
            {"relation": s.relation, "rows_read": s.rows_read, "blocks": s.blocks} for s in reading
        ],
        "seq_scan_empty_partitions": len(on_interceptions) - len(reading),
        "seq_scan_other_tables": others,
        "ok": not reading,
        "access": access_paths(plan["Plan"]),
    }


def access_paths(plan: dict[str, Any]) -> dict[str, int]:
    """How the recording tables were read: each scan kind and index (named as on the parent, the
    partition's day left out), with how many partitions it ran on."""
    counts: Counter[str] = Counter()
    todo = [plan]
    while todo:
        node = todo.pop()
        todo += node.get("Plans", [])
        relation = str(node.get("Relation Name", ""))
        if not relation.startswith("aibridge_") or int(node.get("Actual Loops", 0)) == 0:
            continue
        index = node.get("Index Name")
        name = _PARTITION.sub(r"\1", index if index else relation)
        counts[f"{node['Node Type']} {name}"] += 1
    return dict(counts.most_common())


def _literal(value: Any) -> str:
    """A bound value as an SQL literal for EXECUTE (which takes no protocol parameters); the
    values are the bench's own, quoted all the same."""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):  # an array literal, '{"a","b"}', typed by the parameter
        text = "{" + ",".join(f'"{_text(v)}"' for v in value) + "}"
    else:
        text = _text(value)
    return "'" + text.replace("'", "''") + "'"


def _text(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


async def explain(conn: Connection, statement: Statement) -> dict[str, Any]:
    """The statement's custom and generic plans, executed, with their verdicts."""
    out: dict[str, Any] = {}
    args = ", ".join(_literal(value) for value in statement.params)
    execute = "EXECUTE bench_explain" + (f"({args})" if args else "")
    await conn.execute(f"PREPARE bench_explain AS {statement.sql}")
    try:
        for mode, setting in MODES.items():
            await conn.execute(f"SET plan_cache_mode = {setting}")
            text = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {execute}")
            (plan,) = orjson.loads(text)
            out[mode] = verdict(plan)
            out[mode]["plan"] = plan  # the caller decides whether to keep it (it is large)
    finally:
        await conn.execute("DEALLOCATE bench_explain; RESET plan_cache_mode")
    return out
