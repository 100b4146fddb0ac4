"""The dashboard's SVG charts: well-formed markup whose bars measure the values, named and
described for assistive technology, with the numbers again as a table, and text escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from aibridged.dashboard.charts import ChartSeries, nice_ticks, short_number, stacked_bars

SVG = "{http://www.w3.org/2000/svg}"


def _chart(series: list[ChartSeries], labels: list[str]) -> ET.Element:
    markup = stacked_bars(chart_id="c1", title="Tokens by model", description="per hour",
                          x_labels=labels, x_titles=[f"day {x}" for x in labels], series=series,
                          y_label="tokens", x_label="hour (UTC)")  # fmt: skip
    return ET.fromstring(str(markup))  # the figure: well-formed, or this raises


def test_bars_stack_per_position_and_their_heights_measure_the_values() -> None:
    series = [ChartSeries("gpt", [100, 0, 300]), ChartSeries("other", [100, 50, 0], other=True)]
    figure = _chart(series, ["a", "b", "c"])
    svg = figure.find(f"{SVG}svg")
    assert svg is not None and svg.get("role") == "img"
    assert svg.get("aria-labelledby") == "c1-title c1-desc"
    assert svg.findtext(f"{SVG}title") == "Tokens by model"
    assert svg.findtext(f"{SVG}desc") == "per hour"
    bars = [r for r in svg.iter(f"{SVG}rect") if r.get("class") == "bar"]
    assert [(b.get("data-series"), b.get("data-value")) for b in bars] == [
        ("gpt", "100"), ("other", "100"), ("other", "50"), ("gpt", "300")]  # fmt: skip
    per_value = float(bars[3].get("height", 0)) / 300
    for bar in bars:
        assert abs(float(bar.get("height", 0)) - per_value * int(bar.get("data-value", 0))) < 0.2
    first, stacked = bars[0], bars[1]  # the second segment sits on the first
    bottom = float(stacked.get("y", 0)) + float(stacked.get("height", 0))
    assert abs(bottom - float(first.get("y", 0))) < 0.2
    assert bars[1].get("fill") == "#8c959f" and bars[0].get("fill") != bars[1].get("fill")
    assert bars[0].findtext(f"{SVG}title") == "gpt, day a: 100 tokens"
    legend = [t.text for g in svg.iter(f"{SVG}g") for t in g.iter(f"{SVG}text")]
    assert legend == ["gpt", "other"]


def test_the_numbers_are_also_a_table_and_text_is_escaped() -> None:
    figure = _chart([ChartSeries("<script>x</script>", [1234, 5])], ["a", "b"])
    rows = [[c.text for c in row] for row in figure.iter("tr")]
    assert rows == [["Time", "<script>x</script>", "Total"], ["day a", "1,234", "1,234"],
                    ["day b", "5", "5"]]  # fmt: skip
    assert figure.find("details/summary") is not None
    assert not list(figure.iter("script"))  # the label stayed text


def test_an_empty_range_still_draws_its_axes_and_says_so() -> None:
    svg = _chart([], ["a", "b"]).find(f"{SVG}svg")
    assert svg is not None
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "No usage in this range" in texts and "tokens" in texts and "a" in texts
    assert not [r for r in svg.iter(f"{SVG}rect") if r.get("class") == "bar"]


def test_value_axis_ticks_are_round_and_reach_the_highest_value() -> None:
    assert nice_ticks(0) == [0, 1]
    assert nice_ticks(7) == [0, 2, 4, 6, 8]
    assert nice_ticks(1000) == [0, 200, 400, 600, 800, 1000]
    assert nice_ticks(1234) == [0, 250, 500, 750, 1000, 1250]
    assert [short_number(v) for v in (999, 1000, 1250, 2_500_000, 3 * 10**9)] == [
        "999", "1k", "1.2k", "2.5M", "3G"]  # fmt: skip
