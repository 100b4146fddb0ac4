"""The bench's tables: Markdown that also reads as plain text, one row builder per section."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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


LATENCY_LABELS = {
    "chat": "chat, blocking",
    "messages": "messages, blocking",
    "messages_stream": "messages stream, TTFB",
    "responses": "responses, blocking",
}


def latency_rows(latency: dict[str, Any]) -> list[list[Any]]:
    return _paired_latency_rows(latency, "direct", "gateway")


def _paired_latency_rows(latency: dict[str, Any], base: str, test: str) -> list[list[Any]]:
    """One row per body: `base` and `test` percentiles, what `test` adds, the paired deltas."""
    rows: list[list[Any]] = []
    for name, r in latency.items():
        o, g = r.get(f"{base}_ms") or {}, r.get(f"{test}_ms") or {}
        a, p = r.get("added_ms") or {}, r.get("paired_diff_ms") or {}
        rows.append(
            [
                f"{LATENCY_LABELS.get(name, name)} ({r['body_bytes'] // 1000} KB)",
                r["samples"][test],
                *(o.get(k, float("nan")) for k in ("p50", "p90", "p99")),
                *(g.get(k, float("nan")) for k in ("p50", "p90", "p99")),
                *(a.get(k, float("nan")) for k in ("p50", "p99")),
                *(p.get(k, float("nan")) for k in ("p50", "p99")),
                r["errors"][base] + r["errors"][test],
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


def function_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[r.get("function") or r.get("package"), r["samples"], r["pct"]] for r in rows]


LITELLM_LATENCY_HEADERS = (
    "concurrency 1 (ms)",
    "n/path",
    "direct p50",
    "LiteLLM p50",
    "p90",
    "p99",
    "LiteLLM added p50",
    "gateway added p50",
    "errors",
)


def litellm_latency_rows(
    latency_litellm: dict[str, Any], latency: dict[str, Any]
) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for name, r in latency_litellm.items():
        lm, added = r.get("litellm_ms") or {}, r.get("added_ms") or {}
        gateway_added = (latency.get(name) or {}).get("added_ms", {}).get("p50", float("nan"))
        rows.append(
            [
                f"{LATENCY_LABELS.get(name, name)} ({r['body_bytes'] // 1000} KB)",
                r["samples"]["litellm"],
                r["direct_ms"].get("p50", float("nan")),
                *(lm.get(k, float("nan")) for k in ("p50", "p90", "p99")),
                added.get("p50", float("nan")),
                gateway_added,
                r["errors"]["direct"] + r["errors"]["litellm"],
            ]
        )
    return rows


LITELLM_THROUGHPUT_HEADERS = (
    "saturated",
    "direct req/s",
    "gateway req/s",
    "LiteLLM req/s",
    "gw ÷ LiteLLM",
    "gw ÷ direct",
    "LiteLLM ÷ direct",
    "LiteLLM range",
    "LiteLLM p99 ms",
    "LiteLLM CPU %",
    "LiteLLM CPU ms/req",
    "LiteLLM errors",
)


def litellm_throughput_rows(summary: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            f"{'JSON chat' if s['kind'] == 'json' else 'SSE messages'} c={s['connections']}",
            s["direct_rps"],
            s["gateway_rps"],
            s["litellm_rps"],
            _or_nan(s["gateway_over_litellm"]),
            s["ratio"],
            _or_nan(s["litellm_over_direct"]),
            s["litellm_rps_range"],
            s["litellm_p99_ms"],
            s["litellm_cpu_pct"],
            _or_nan(s["litellm_cpu_ms_per_request"]),
            s["litellm_errors"],
        ]
        for s in summary
        if "litellm_rps" in s
    ]


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


STREAMS_HEADERS = (
    "path",
    "streams",
    "complete",
    "errors",
    "peak open",
    "all open for s",
    "first byte p50 ms",
    "p99",
    "stream p50 s",
    "max s",
    "RSS before MiB",
    "at peak MiB",
    "KB/stream",
    "fds at peak",
    "CPU %",
)


def streams_rows(streams: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for via, r in streams.items():
        if "error" in r:
            rows.append([via, "-", "-", r["error"][:60], *["-"] * 11])
            continue
        kinds = ", ".join(f"{k} {v}" for k, v in r["errors"].items() if v)
        rows.append(
            [
                f"{via} ({r['process']})",
                r["streams"],
                r["ok"],
                f"{r['error_count']} ({kinds})" if kinds else 0,
                r["peak_open"],
                _or_nan(r["all_open_for_s"]),
                r["first_byte_ms"]["p50"],
                r["first_byte_ms"]["p99"],
                r["stream_ms"]["p50"] / 1000,
                r["stream_ms"]["max"] / 1000,
                r["rss_kb_before"] / 1024,
                r["rss_kb_at_peak"] / 1024,
                _or_nan(r["rss_kb_per_stream"]),
                r["fds_at_peak"],
                r["cpu_pct"].get(r["process"], float("nan")),
            ]
        )
    return rows


def bench_target_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [r["target"], _or_nan(r["measured"]), r["limit"], r["verdict"], r["detail"]] for r in rows
    ]


RECORDING_LATENCY_HEADERS = (
    "concurrency 1 (ms)",
    "n/path",
    "off p50",
    "p90",
    "p99",
    "on p50",
    "p90",
    "p99",
    "added p50",
    "added p99",
    "paired d p50",
    "paired d p99",
    "errors",
)


def recording_latency_rows(latency_recording: dict[str, Any]) -> list[list[Any]]:
    return _paired_latency_rows(latency_recording, "recording_off", "recording_on")


def paired_latency_rows(latency: dict[str, Any], first: str, second: str) -> list[list[Any]]:
    """Rows of RECORDING_LATENCY_HEADERS for any two gateways interleaved (tracing's pairs)."""
    return _paired_latency_rows(latency, first, second)


RECORDING_THROUGHPUT_HEADERS = (
    "saturated",
    "off req/s",
    "on req/s",
    "on ÷ off",
    "off range",
    "on range",
    "off p99 ms",
    "on p99 ms",
    "off CPU ms/req",
    "on CPU ms/req",
    "PG CPU %",
    "PG CPU ms/req",
    "errors on/off",
)


def recording_throughput_rows(summary: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            f"{'JSON chat' if s['kind'] == 'json' else 'SSE messages'} c={s['connections']}",
            s["gateway_norec_rps"],
            s["gateway_rps"],
            _or_nan(s["recording_ratio"]),
            s["gateway_norec_rps_range"],
            s["gateway_rps_range"],
            s["gateway_norec_p99_ms"],
            s["gateway_p99_ms"],
            _or_nan(s["gateway_norec_cpu_ms_per_request"]),
            s["gateway_cpu_ms_per_request"],
            s["postgres_cpu_pct_gateway_run"],
            _or_nan(s["postgres_cpu_ms_per_request"]),
            f"{s['gateway_errors']}/{s['gateway_norec_errors']}",
        ]
        for s in summary
        if "gateway_norec_rps" in s
    ]


WRITER_HEADERS = (
    "recorder write rate",
    "interceptions",
    "in flight",
    "seconds",
    "interceptions/s",
    "rows/s",
    "start wait p50 ms",
    "p99",
    "start alone p50 ms",
    "batches",
    "dropped",
    "deepest row queue",
    "recorder CPU ms/interception",
    "PG CPU %",
)


def writer_rows(rate: dict[str, Any]) -> list[list[Any]]:
    if not rate:
        return []
    if "error" in rate:
        return [["failed", rate["error"][:80], *["-"] * 12]]
    return [
        [
            "start + token usage + prompt + tool + end",
            rate["interceptions"],
            rate["concurrency"],
            rate["seconds"],
            rate["interceptions_per_s"],
            rate["rows_per_s"],
            rate["start_wait_ms"].get("p50", float("nan")),
            rate["start_wait_ms"].get("p99", float("nan")),
            (rate.get("start_alone_ms") or {}).get("p50", float("nan")),
            rate["batches"],
            rate["dropped"],
            rate["deepest_queue"].get("rows", 0),
            rate["recorder_cpu_ms_per_interception"],
            rate["cpu_pct"].get("postgres", float("nan")),
        ]
    ]
