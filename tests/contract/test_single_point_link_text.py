"""Fix text of a geo_attributes line without length: it names road links, not only trips."""

from __future__ import annotations

from pathlib import Path

import contract_corpus as corpus
import pytest

from compute.contract import ContractSettings, ValidationContext, conform_table, to_frame, validate_rows
from compute.i18n import message
from compute.inspection import validate_path
from compute.settings import load_settings

ONE_POINT_LINK = "LINESTRING (139.75 35.66, 139.75 35.66)"
ONE_POINT_AREA = "POLYGON ((139.75 35.66, 139.75 35.66, 139.75 35.66, 139.75 35.66))"


def _validate_geo(rows: list[dict]):  # type: ignore[no-untyped-def]
    settings = ContractSettings()
    frame = to_frame("geo_attributes", conform_table("geo_attributes", corpus.geo_attributes(rows), settings))
    return validate_rows("geo_attributes", frame, ValidationContext(settings=settings))


class TestSinglePointGeometry:
    def test_link_of_one_point_rejected(self) -> None:
        _, rejects = _validate_geo([{"feature_id": "l-one-point", "wkt": ONE_POINT_LINK, "road_class": "primary"}])

        assert rejects["reason"].tolist() == ["geometry_single_point"]
        assert rejects["detail"].tolist() == ["2 vertices, no distinct second point"]

    def test_area_of_one_point_is_invalid(self) -> None:
        _, rejects = _validate_geo([{"feature_id": "a-one-point", "wkt": ONE_POINT_AREA, "area_type": "urban"}])

        assert rejects["reason"].tolist() == ["geometry_invalid"]

    @pytest.mark.parametrize(("lang", "link"), [("ja", "道路リンク"), ("en", "road link")])
    def test_action_names_road_links(self, lang: str, link: str) -> None:
        action = message("contract.reason.geometry_single_point.action", lang)

        assert link in action

    def test_japanese_action_not_only_trips(self) -> None:
        action = message("contract.reason.geometry_single_point.action", "ja")

        assert action != "2 つ以上の異なる頂点を持つトリップだけを出力してください。"
        assert "削除" in action


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [
        {"feature_id": "osm-a1", "wkt": corpus.URBAN_AREA, "area_type": "urban"},
        {"feature_id": "l-one-point", "wkt": ONE_POINT_LINK, "road_class": "primary"},
    ]
    tables = {**corpus.good_day(), "geo_attributes": corpus.geo_attributes(rows)}
    return corpus.write_day(tmp_path_factory.mktemp("single_point_link"), tables)


class TestSinglePointReport:
    @pytest.mark.parametrize(("lang", "link"), [("ja", "道路リンク"), ("en", "road link")])
    def test_report_shows_link_action(self, day: Path, lang: str, link: str) -> None:
        report, balanced = validate_path(str(day), load_settings(), lang=lang)

        assert balanced
        row = next(line for line in report.splitlines() if "`geometry_single_point`" in line)
        assert "`l-one-point`" in row
        assert message("contract.reason.geometry_single_point.action", lang) in row
        assert link in row
