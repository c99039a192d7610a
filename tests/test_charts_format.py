"""Value labels, count ticks and the legend of the run report's charts."""

from __future__ import annotations

import re

import pytest

from compute import charts


def _decimals(label: str) -> int:
    return len(label.split(".", 1)[1]) if "." in label else 0


class TestFormatBarLabels:
    def test_counts_are_integers(self) -> None:
        assert charts.format_bar_labels([248.0, 13.0, 2.0], counts=True) == ["248", "13", "2"]

    def test_large_count_has_separator(self) -> None:
        assert charts.format_bar_labels([12345.0, 7.0], counts=True) == ["12,345", "7"]

    @pytest.mark.parametrize(
        ("values", "expected"),
        [
            ([193.2, 100.0, 2.26], ["193", "100", "2"]),
            ([12.0, 2.26, 0.04], ["12.0", "2.3", "0.0"]),
            ([0.5, 0.021], ["0.50", "0.02"]),
            ([0.0, 0.0], ["0", "0"]),
        ],
    )
    def test_quantities_share_one_format(self, values: list[float], expected: list[str]) -> None:
        labels = charts.format_bar_labels(values)

        assert labels == expected
        assert len({_decimals(label) for label in labels}) == 1

    def test_labels_are_plain_numbers(self) -> None:
        for label in charts.format_bar_labels([1234.5, 99.0, 3.0]):
            assert re.fullmatch(r"[0-9,]+", label), label


class TestCountTicks:
    def test_rejects_ticks_are_integers(self) -> None:
        figure, _ = charts._draw_bar_chart(
            ["trajectories: too_fast", "vehicles: unknown"], [3.0, 1.0], "Rejected rows", "Rows", horizontal=True, counts=True,
        )
        figure.canvas.draw()

        ticks = figure.axes[0].get_xticks()
        assert len(ticks) >= 2
        for tick in ticks:
            assert float(tick).is_integer(), ticks

    def test_bar_labels_of_counts(self) -> None:
        figure, _ = charts._draw_bar_chart(["a", "b"], [248.0, 13.0], "Trips by method tier", "Trips", horizontal=True, counts=True)

        texts = [text.get_text() for text in figure.axes[0].texts]
        assert "248" in texts
        assert "13" in texts
        assert "13.0" not in texts


class TestMatchedShareLegend:
    @pytest.mark.parametrize("lang", ["ja", "en"])
    def test_legend_inside_figure(self, lang: str) -> None:
        font = charts.find_japanese_font() if lang == "ja" else None
        figure, values = charts.draw_matched_share(60.0, 100.0, lang)

        charts._png(figure, font)

        renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
        axes_legends = [legend for axes in figure.axes if (legend := axes.get_legend()) is not None]
        legends = figure.legends + axes_legends
        assert len(legends) == 1
        box = legends[0].get_window_extent(renderer)
        assert box.x0 >= figure.bbox.x0
        assert box.y0 >= figure.bbox.y0
        assert box.x1 <= figure.bbox.x1
        assert box.y1 <= figure.bbox.y1
        assert values["value"].to_list() == [60.0, 40.0]


class TestCategoryLabels:
    """Japanese charts name the category codes; the values keep the codes of the output files."""

    def test_japanese_names_keep_the_code(self) -> None:
        from compute.charts import category_labels

        got = category_labels(["heavy_truck", "gps_profile", "unmatched", "primary", "construction"], "ja")
        assert got == ["大型貨物車（heavy_truck）", "T3 GPS 走行（gps_profile）", "未照合（unmatched）", "幹線道路（primary）", "construction"]

    def test_english_shows_the_codes(self) -> None:
        from compute.charts import category_labels

        assert category_labels(["heavy_truck", "unmatched"], "en") == ["heavy_truck", "unmatched"]

    def test_ticks_named_values_coded(self) -> None:
        from compute.charts import _draw_bar_chart

        figure, values = _draw_bar_chart(["bus", "passenger"], [3.0, 1.0], "t", "kg", horizontal=True, tick_labels=["バス（bus）", "乗用車（passenger）"])
        ticks = [tick.get_text() for tick in figure.axes[0].get_yticklabels()]
        assert ticks == ["バス（bus）", "乗用車（passenger）"]
        assert values["label"].tolist() == ["bus", "passenger"]
        assert values["value"].tolist() == [3.0, 1.0]

    def test_methods_in_tier_order(self) -> None:
        import pandas as pd

        from compute import charts
        from compute import columns as c

        trips = pd.DataFrame({c.METHOD: ["gps_profile", "catalog_fe", None, "fuel_measured", "gps_profile", "default_table", "tacho_profile"]})
        chart = charts._chart_methods(None, trips, "en", None)  # type: ignore[arg-type]
        assert chart is not None
        assert chart.values["label"].tolist() == ["fuel_measured", "tacho_profile", "gps_profile", "catalog_fe", "default_table", "unavailable"]
        assert chart.values["value"].tolist() == [1.0, 1.0, 2.0, 1.0, 1.0, 1.0]
