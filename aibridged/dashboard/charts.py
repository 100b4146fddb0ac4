"""Server-side SVG charts: stacked bars over time, drawn as markup (no JavaScript, nothing fetched).

A chart is a <figure> holding the SVG (role="img", named by its <title> and described by its
<desc>; each bar segment has its own <title>, which browsers show on hover) and, after it, the same
numbers as a table in a <details> element: what a screen reader or a reader who wants exact
values uses. Colours are the Okabe-Ito palette (told apart with the common colour-vision
deficiencies), the "other" series grey; only presentation attributes are used, never `style`, so
the dashboard's Content-Security-Policy (no inline styles) holds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#882255",
           "#44aa99", "#999933", "#332288")  # fmt: skip
OTHER_COLOUR = "#8c959f"
WIDTH, HEIGHT = 960, 360
LEFT, RIGHT, BOTTOM = 64, 16, 44  # room for the value axis and the time labels
LEGEND_ROW, LEGEND_ITEM = 22, 190
MAX_TIME_LABELS = 12


@dataclass(frozen=True, slots=True)
class ChartSeries:
    label: str
    values: Sequence[int]  # one per x position
    other: bool = False  # the groups summed together: drawn grey


def stacked_bars(
    *,
    chart_id: str,
    title: str,
    description: str,
    x_labels: Sequence[str],
    x_titles: Sequence[str],
    series: Sequence[ChartSeries],
    y_label: str,
    x_label: str,
) -> Markup:
    """A stacked bar chart and its data table. `x_labels` are short (the axis), `x_titles` say
    each position in full (the hover titles and the table)."""
    colours = _colours(series)
    legend_rows = math.ceil(len(series) / max(1, (WIDTH - LEFT) // LEGEND_ITEM)) if series else 0
    top = 12 + legend_rows * LEGEND_ROW
    plot_h = HEIGHT - top - BOTTOM
    totals = [sum(s.values[i] for s in series) for i in range(len(x_labels))]
    ticks = nice_ticks(max(totals, default=0))
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' aria-labelledby="{chart_id}-title {chart_id}-desc" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(description)}</desc>',
        *_legend(series, colours),
        *_value_axis(ticks, top, plot_h, y_label),
        *_bars(series, colours, x_titles, ticks[-1], top, plot_h),
        *_time_axis(x_labels, top + plot_h, x_label),
    ]
    if not any(totals):
        centre = LEFT + (WIDTH - LEFT - RIGHT) / 2
        parts.append(f'<text x="{centre:.1f}" y="{top + plot_h / 2:.1f}" text-anchor="middle"'
                     ' fill="#57606a">No usage in this range</text>')  # fmt: skip
    parts.append("</svg>")
    table = data_table(title, x_titles, series)
    return Markup(
        f'<figure class="chart-figure" id="{chart_id}">{"".join(parts)}'
        f"<details><summary>The chart's numbers as a table</summary>{table}</details></figure>"
    )


def data_table(caption: str, x_titles: Sequence[str], series: Sequence[ChartSeries]) -> Markup:
    head = "".join(f'<th scope="col">{escape(s.label)}</th>' for s in series)
    rows = []
    for i, when in enumerate(x_titles):
        cells = "".join(f"<td>{s.values[i]:,}</td>" for s in series)
        total = sum(s.values[i] for s in series)
        rows.append(f'<tr><th scope="row">{escape(when)}</th>{cells}<td>{total:,}</td></tr>')
    return Markup(
        f'<div class="table-wrap"><table><caption>{escape(caption)}</caption>'
        f'<thead><tr><th scope="col">Time</th>{head}<th scope="col">Total</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def nice_ticks(highest: int, count: int = 5) -> list[int]:
    """0 up to a round number at or above `highest`, in about `count` round steps."""
    if highest <= 0:
        return [0, 1]
    raw = highest / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    step = max(1, round(step))
    return list(range(0, math.ceil(highest / step) * step + 1, step))


def short_number(value: int) -> str:
    """1200 -> 1.2k, 3400000 -> 3.4M: axis labels that fit."""
    for size, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}".rstrip("0").rstrip(".") + suffix
    return str(value)


def _colours(series: Sequence[ChartSeries]) -> list[str]:
    palette = itertools.cycle(PALETTE)
    return [OTHER_COLOUR if s.other else next(palette) for s in series]


def _legend(series: Sequence[ChartSeries], colours: list[str]) -> list[str]:
    per_row = max(1, (WIDTH - LEFT) // LEGEND_ITEM)
    items = []
    for n, (one, colour) in enumerate(zip(series, colours, strict=True)):
        x = LEFT + (n % per_row) * LEGEND_ITEM
        y = 8 + (n // per_row) * LEGEND_ROW
        label = one.label if len(one.label) <= 24 else one.label[:23] + "…"
        items.append(
            f'<g class="legend-item"><rect x="{x}" y="{y}" width="14" height="14" fill="{colour}"/>'
            f'<text x="{x + 20}" y="{y + 12}" font-size="13">{escape(label)}</text></g>'
        )
    return items


def _value_axis(ticks: list[int], top: int, plot_h: int, y_label: str) -> list[str]:
    parts = []
    for tick in ticks:
        y = top + plot_h - plot_h * tick / ticks[-1]
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d0d7de"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12">'
            f"{short_number(tick)}</text>"
        )
    middle = top + plot_h / 2
    parts.append(f'<text x="14" y="{middle:.1f}" text-anchor="middle" font-size="12"'
                 f' transform="rotate(-90 14 {middle:.1f})">{escape(y_label)}</text>')  # fmt: skip
    return parts


def _bars(
    series: Sequence[ChartSeries],
    colours: list[str],
    x_titles: Sequence[str],
    highest: int,
    top: int,
    plot_h: int,
) -> list[str]:
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(x_titles))
    width = max(1.0, slot * 0.8)
    parts = []
    for i, when in enumerate(x_titles):
        base = float(top + plot_h)
        for one, colour in zip(series, colours, strict=True):
            value = one.values[i]
            if value <= 0:
                continue
            height = plot_h * value / highest
            base -= height
            parts.append(
                f'<rect class="bar" x="{LEFT + i * slot + (slot - width) / 2:.1f}" y="{base:.1f}"'
                f' width="{width:.1f}" height="{height:.1f}" fill="{colour}"'
                f' data-series="{escape(one.label)}" data-value="{value}">'
                f"<title>{escape(one.label)}, {escape(when)}: {value:,} tokens</title></rect>"
            )
    return parts


def _time_axis(x_labels: Sequence[str], baseline: int, x_label: str) -> list[str]:
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(x_labels))
    every = max(1, math.ceil(len(x_labels) / MAX_TIME_LABELS))
    parts = [f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{baseline}" y2="{baseline}"'
             ' stroke="#57606a"/>']  # fmt: skip
    for i in range(0, len(x_labels), every):
        x = LEFT + i * slot + slot / 2
        parts.append(f'<text x="{x:.1f}" y="{baseline + 16}" text-anchor="middle"'
                     f' font-size="12">{escape(x_labels[i])}</text>')  # fmt: skip
    parts.append(f'<text x="{LEFT + (WIDTH - LEFT - RIGHT) / 2:.1f}" y="{HEIGHT - 6}"'
                 f' text-anchor="middle" font-size="12">{escape(x_label)}</text>')  # fmt: skip
    return parts
