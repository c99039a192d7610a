"""Details of rejected rows in Japanese and English, rendered from a kind and its parameters.

Every reason code has detail kinds with a template per language, and every row rule writes one
of them. The validation report shows the detail in the operator's language, while the rejects
file keeps it in English.
"""

from __future__ import annotations

import json
import string
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from compute.contract import (
    DETAIL_KINDS,
    REASON_DETAILS,
    REJECT_COLUMNS,
    ContractSettings,
    Detail,
    ReasonCode,
    ValidationContext,
    conform_table,
    render_detail,
    render_details,
    repeated_keys_in,
    to_frame,
    validate_rows,
)
from compute.contract.details import geos_problem
from compute.contract.state import RuleState
from compute.i18n import LANGUAGES, has_message, message
from compute.inspection import validate_path
from compute.settings import load_settings
from tests.contract import contract_corpus as corpus

# One set of parameters per detail kind, as a rule would write them.
SAMPLE_PARAMS: dict[str, dict[str, object]] = {
    "row_of_partition": {"row": 5},
    "row_of_file": {"file": "trajectories/part-00002.parquet", "row": 5},
    "key_repeated": {},
    "copy_of_file_row": {"file": "tachometer/part-00003.parquet", "row": 1204},
    "copy_of_partition_row": {"row": 7},
    "value_null": {"column": "vehicle_id"},
    "vehicle_unknown": {"accepted_vehicles": 50},
    "vehicle_row_rejected": {"master_reason": "test_cycle_unknown"},
    "geometry_null": {},
    "vertices_above_max": {"vertices": 1_200_000, "limit": 1_000_000},
    "wkb_undecodable": {"size_bytes": 9},
    "types_allowed": {"types": "LineString, MultiLineString"},
    "no_vertices": {},
    "wkb_too_short": {},
    "no_second_point": {"vertices": 2},
    "geos_invalid": {"problem": "Ring Self-intersection", "location": "[139.7 35.68]"},
    "elevation_infinite": {"vertex": 3},
    "repair_left_no_area": {"problem": "Self-intersection", "location": "[139.7 35.68]"},
    "vertex_lon_lat": {"vertex": 2},
    "times_null": {},
    "timestamp_count": {"timestamps": 11, "vertices": 12},
    "timestamp_null": {"timestamps": 12, "vertices": 12},
    "vertex_outside_window": {"vertex": 0, "min_time": "2000-01-01T00:00:00+00:00", "max_time": "2100-01-01T00:00:00+00:00"},
    "outside_window": {"min_time": "2000-01-01T00:00:00+00:00", "max_time": "2100-01-01T00:00:00+00:00"},
    "vertex_pair": {"first": 1, "second": 2},
    "end_before_start": {},
    "vertex_speed": {"first": 4, "second": 5, "distance_m": 900.4, "interval_s": 10.0, "limit_kmh": 250.0},
    "trip_average_speed": {"distance_m": 90000.0, "duration_s": 600.0, "limit_kmh": 250.0},
    "speed_above_limit": {"limit_kmh": 250.0},
    "value_negative": {"column": "load_kg"},
    "above_max": {"column": "load_kg", "setting": "max_load_kg", "limit": 60000.0},
    "abs_above_max": {"column": "gradient_pct", "setting": "max_abs_gradient_pct", "limit": 30.0},
    "outside_lower_exclusive": {"column": "catalog_fuel_economy_km_per_l", "lower": 0, "upper": 60.0},
    "outside_range": {"column": "model_year", "lower": 1950, "upper": 2030},
    "fuel_rate": {"rate_l_per_h": 95.2, "interval_s": 10.0, "limit_l_per_h": 80.0},
    "values_allowed": {"values": "gasoline, diesel, hybrid, lpg, cng, electric"},
}

# English words of the detail texts that a Japanese report must not show.
ENGLISH_WORDS = (
    "vertex", "vertices", "timestamps for", "fewer than", "of the partition", "above", "outside", "limit",
    "average", "allowed", "is null", "before", "over", "Self-intersection", "left no area", "longitude",
    "accepted", "occurs", "negative", "not valid",
)  # fmt: skip

REASON_KINDS = [(code, kind) for code, kinds in REASON_DETAILS.items() for kind in kinds]


def _template(kind: str, lang: str) -> str:
    # An empty format fills nothing, so message() returns the raw template.
    return message(f"contract.detail.{kind}", lang)


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _literal_text(template: str) -> str:
    return "".join(literal for literal, _, _, _ in string.Formatter().parse(template))


def _has_non_ascii(text: str) -> bool:
    return any(ord(character) > 127 for character in text)


class TestTemplates:
    def test_every_reason_has_a_detail_kind(self) -> None:
        assert set(REASON_DETAILS) == set(ReasonCode)
        for code, kinds in REASON_DETAILS.items():
            assert kinds, code
            assert set(kinds) <= set(DETAIL_KINDS), code

    def test_every_kind_belongs_to_a_reason(self) -> None:
        used = {kind for kinds in REASON_DETAILS.values() for kind in kinds}
        assert used == set(DETAIL_KINDS)

    def test_every_kind_has_sample_parameters(self) -> None:
        assert set(SAMPLE_PARAMS) == set(DETAIL_KINDS)
        for kind, names in DETAIL_KINDS.items():
            assert set(SAMPLE_PARAMS[kind]) == set(names), kind

    @pytest.mark.parametrize("lang", LANGUAGES)
    @pytest.mark.parametrize("kind", sorted(DETAIL_KINDS))
    def test_template_uses_declared_parameters(self, kind: str, lang: str) -> None:
        assert has_message(f"contract.detail.{kind}"), kind
        assert _fields(_template(kind, lang)) == set(DETAIL_KINDS[kind])

    @pytest.mark.parametrize(("code", "kind"), REASON_KINDS, ids=[f"{code.value}-{kind}" for code, kind in REASON_KINDS])
    def test_reason_renders_in_both_languages(self, code: ReasonCode, kind: str) -> None:
        detail = Detail(kind, SAMPLE_PARAMS[kind])
        japanese = detail.text("ja")
        english = detail.text("en")
        assert _has_non_ascii(_literal_text(_template(kind, "ja"))), (code, _template(kind, "ja"))
        assert _has_non_ascii(japanese), (code, japanese)
        assert not _has_non_ascii(english), (code, english)
        assert japanese != english
        for word in ENGLISH_WORDS:
            assert word not in japanese, (code, word, japanese)

    def test_english_text_unchanged_for_existing_details(self) -> None:
        # Clients may parse these English texts in the rejects file, so they must stay as they are.
        assert render_detail("vertex_speed", SAMPLE_PARAMS["vertex_speed"], "en") == "vertex 4 to 5: 900 m in 10.0 s, limit 250 km/h"
        assert render_detail("fuel_rate", SAMPLE_PARAMS["fuel_rate"], "en") == "95 l/h over 10.0 s, limit 80 l/h"
        assert render_detail("abs_above_max", SAMPLE_PARAMS["abs_above_max"], "en") == "|gradient_pct| above max_abs_gradient_pct 30"
        assert render_detail("outside_range", SAMPLE_PARAMS["outside_range"], "en") == "model_year outside [1950, 2030]"
        assert render_detail("geos_invalid", SAMPLE_PARAMS["geos_invalid"], "en") == "Ring Self-intersection[139.7 35.68]"


class TestDetail:
    def test_unknown_kind_rejected(self) -> None:
        with pytest.raises(ValueError, match=r"detail kind 'vertex_jump' is not declared in DETAIL_KINDS\."):
            Detail("vertex_jump", {})

    def test_wrong_parameters_rejected(self) -> None:
        with pytest.raises(ValueError, match=r"detail kind 'vertex_pair' takes parameters \['first', 'second'\], got \['first'\]"):
            Detail("vertex_pair", {"first": 1})

    def test_kind_of_other_reason_rejected(self) -> None:
        state = RuleState(1)
        with pytest.raises(ValueError, match=r"detail kind 'vertex_pair' is not declared for reason 'key_missing'\."):
            state.reject(ReasonCode.KEY_MISSING, np.array([True]), detail=Detail("vertex_pair", {"first": 0, "second": 1}))
        assert state.open.tolist() == [True]

    def test_text_in_place_of_detail_rejected(self) -> None:
        state = RuleState(1)
        with pytest.raises(TypeError, match=r"a rejected row needs a Detail, got str 'row 0 of the partition'"):
            state.reject(ReasonCode.KEY_MISSING, np.array([True]), detail=lambda hit: ["row 0 of the partition"] * len(hit))

    def test_numpy_numbers_stored_as_json_numbers(self) -> None:
        detail = Detail("vertex_pair", {"first": np.int64(1), "second": np.int64(2)})
        assert json.loads(detail.params_json()) == {"first": 1, "second": 2}

    def test_geos_problem_split(self) -> None:
        assert geos_problem("Self-intersection[139.7 35.68]") == {"problem": "Self-intersection", "location": "[139.7 35.68]"}
        assert geos_problem("Ring is not closed") == {"problem": "Ring is not closed", "location": ""}

    def test_unknown_geos_problem_kept(self) -> None:
        params = {"problem": "Something new", "location": "[1 2]"}
        assert render_detail("geos_invalid", params, "ja") == "GEOS の判定: Something new[1 2]"

    def test_render_details_without_structured_columns(self) -> None:
        _, rejects = _validate("trajectories", corpus.trajectories([{**corpus.GOOD_TRIP, "vehicle_id": "V404"}]))
        stored = rejects[list(REJECT_COLUMNS)]
        assert render_details(stored, "ja") is stored
        assert render_details(rejects, "ja")["detail"].iloc[0] == "採用された車両 2 台の中にありません"


def _validate(dataset: str, table: pa.Table, known: tuple[str, ...] = ("V1", "V2")):  # type: ignore[no-untyped-def]
    settings = ContractSettings()
    conformed = conform_table(dataset, table, settings)
    frame = to_frame(dataset, conformed)
    context = ValidationContext(
        known_vehicle_ids=np.array(known, dtype=object),
        rejected_vehicle_reasons={"V3": "test_cycle_unknown"},
        repeated_keys={dataset: repeated_keys_in(dataset, [conformed], [f"{dataset}/part-0.parquet"])},
        settings=settings,
    )
    return validate_rows(dataset, frame, context)


def _trip(**changes: object) -> dict[str, object]:
    return {**corpus.GOOD_TRIP, "trip_id": "B", **changes}


def _with_geometry(table: pa.Table, geometry: bytes) -> pa.Table:
    column = table.column("geometry").to_pylist()
    column[-1] = geometry
    return table.set_column(2, "geometry", pa.array(column, pa.binary()))


def _with_null_vertex_time(table: pa.Table) -> pa.Table:
    times = pa.array([[corpus.T0_MS, None, corpus.T0_MS + 20_000]], pa.list_(pa.int64())).cast(pa.list_(corpus.TS))
    return table.set_column(3, "timestamps", times)


_INFINITE_Z = shapely.to_wkb(shapely.LineString([(139.7, 35.68, 10.0), (139.701, 35.68, 11.0), (139.702, 35.68, np.inf)]))
with np.errstate(invalid="ignore"):  # GEOS flags the NaN vertex, which is the point of the case
    _NAN_VERTEX = shapely.to_wkb(shapely.LineString([(139.7, 35.68), (np.nan, np.nan), (139.71, 35.68)]))
_ONE_VERTEX = struct.pack("<BII2d", 1, 2, 1, 139.7, 35.68)
_COLLAPSED = "POLYGON ((139.70 35.68, 139.71 35.68, 139.72 35.68, 139.70 35.68))"
_VEHICLE = {"vehicle_id": "V3", "vehicle_class": "bus", "fuel_type": "diesel"}

# (kind, dataset, table, English detail, Japanese detail)
RULE_CASES: list[tuple[str, str, pa.Table, str, str]] = [
    ("row_of_file", "trajectories", corpus.trajectories([corpus.GOOD_TRIP, _trip(trip_id=None)]),
     "row 1 of trajectories/part-0.parquet, counting from 0", "trajectories/part-0.parquet の先頭を 0 として 1 行目"),
    ("key_repeated", "trajectories", corpus.trajectories([_trip(), _trip(load_kg=600.0)]),
     "the key occurs more than once in the day", "このキーはその日のデータに 2 回以上あります"),
    ("copy_of_file_row", "trajectories", corpus.trajectories([_trip(), _trip()]),
     "the kept copy is row 0 of trajectories/part-0.parquet, counting from 0",
     "採用した行は、trajectories/part-0.parquet の先頭を 0 として 0 行目です"),
    ("value_null", "trajectories", corpus.trajectories([_trip(vehicle_id=None)]),
     "vehicle_id is null or blank", "vehicle_id が空 (null または空白) です"),
    ("vehicle_unknown", "trajectories", corpus.trajectories([_trip(vehicle_id="V404")]),
     "not among the 2 accepted vehicles", "採用された車両 2 台の中にありません"),
    ("vehicle_row_rejected", "trajectories", corpus.trajectories([_trip(vehicle_id="V3")]),
     "the vehicle's row in vehicles was rejected as test_cycle_unknown; correct that row of the vehicles master",
     "vehicles (車両マスタ) にあるこの車両の行は、理由コード test_cycle_unknown で除外されました。vehicles のその行を直してください"),
    ("geometry_null", "trajectories", corpus.trajectories([_trip(wkt=None)]), "geometry is null", "ジオメトリが null です"),
    ("wkb_undecodable", "trajectories", _with_geometry(corpus.trajectories([_trip()]), b"\x01\x07garbage"),
     "9 bytes that are not valid WKB", "WKB として読めない 9 バイト"),
    ("types_allowed", "trajectories", corpus.trajectories([_trip(wkt="POINT (139.7 35.68)", times_s=[0])]),
     "allowed: LineString", "許可される型: LineString"),
    ("no_vertices", "trajectories", corpus.trajectories([_trip(wkt="LINESTRING EMPTY", times_s=[])]), "no vertices", "頂点がありません"),
    ("wkb_too_short", "trajectories", _with_geometry(corpus.trajectories([_trip()]), _ONE_VERTEX),
     "LineString WKB with fewer than 2 vertices", "頂点が 2 つ未満の LineString WKB"),
    ("no_second_point", "trajectories", corpus.trajectories([_trip(wkt="LINESTRING (139.7 35.68, 139.7 35.68)", times_s=[0, 10])]),
     "2 vertices, no distinct second point", "頂点 2 個、異なる 2 点目なし"),
    ("geos_invalid", "trajectories", _with_geometry(corpus.trajectories([_trip()]), _NAN_VERTEX),
     "Invalid Coordinate[nan nan]", "GEOS の判定: 座標が不正です[nan nan]"),
    ("elevation_infinite", "trajectories", _with_geometry(corpus.trajectories([_trip()]), _INFINITE_Z),
     "vertex 2: elevation is infinite", "頂点 2: 標高が無限大"),
    ("repair_left_no_area", "geo_attributes", corpus.geo_attributes([{"feature_id": "b", "wkt": _COLLAPSED}]),
     "Self-intersection[139.71 35.68]; make_valid left no area", "自己交差[139.71 35.68]。make_valid の後に面積が残りません"),
    ("vertex_lon_lat", "trajectories", corpus.trajectories([_trip(wkt="LINESTRING (139.7 35.68, 139.7 95.0, 139.7 35.69)")]),
     "vertex 1 (x = longitude, y = latitude)", "頂点 1（x = 経度、y = 緯度）"),
    ("times_null", "trajectories", corpus.trajectories([_trip(times_s=None)]),
     "no timestamps, and start_time or end_time is null", "timestamps がなく、start_time または end_time が空です"),
    ("timestamp_count", "trajectories", corpus.trajectories([_trip(times_s=[0, 10])]),
     "2 timestamps for 3 vertices", "頂点 3 個に対して時刻 2 個"),
    ("timestamp_null", "trajectories", _with_null_vertex_time(corpus.trajectories([_trip()])),
     "3 timestamps for 3 vertices; a timestamp is null", "頂点 3 個に対して時刻 3 個。時刻が空の頂点があります"),
    ("vertex_outside_window", "trajectories", corpus.trajectories([_trip(times_s=[-1_000_000_000, 10, 20])]),
     "vertex 0; min_time 2000-01-01T00:00:00+00:00, max_time 2100-01-01T00:00:00+00:00",
     "頂点 0 の時刻が範囲外 (min_time 2000-01-01T00:00:00+00:00、max_time 2100-01-01T00:00:00+00:00)"),
    ("outside_window", "tachometer", corpus.tachometer([{"s": -1_000_000_000, "speed": 5.0}]),
     "min_time 2000-01-01T00:00:00+00:00, max_time 2100-01-01T00:00:00+00:00",
     "時刻が範囲外 (min_time 2000-01-01T00:00:00+00:00、max_time 2100-01-01T00:00:00+00:00)"),
    ("vertex_pair", "trajectories", corpus.trajectories([_trip(times_s=[0, 20, 10])]), "vertex 1 to 2", "頂点 1 から 2"),
    ("end_before_start", "trajectories",
     corpus.trajectories([_trip(times_s=None, start_ms=corpus.T0_MS + 60_000, end_ms=corpus.T0_MS)]),
     "end_time is before start_time", "end_time が start_time より前です"),
    ("vertex_speed", "trajectories", corpus.trajectories([_trip(times_s=[0, 0, 10])]),
     "vertex 0 to 1: 100 m in 1.0 s, limit 200 km/h", "頂点 0 から 1: 1.0 秒で 100 m、上限 200 km/h"),
    ("trip_average_speed", "trajectories",
     corpus.trajectories([_trip(wkt="LINESTRING (139.7 35.68, 139.9 35.68)", times_s=None,
                                start_ms=corpus.T0_MS, end_ms=corpus.T0_MS + 60_000)]),
     "average over the trip: 18105 m in 60 s, limit 200 km/h", "トリップ全体の平均: 60 秒で 18105 m、上限 200 km/h"),
    ("speed_above_limit", "tachometer", corpus.tachometer([{"s": 5, "speed": 250.0}]), "limit 200 km/h", "上限 200 km/h"),
    ("value_negative", "trajectories", corpus.trajectories([_trip(load_kg=-5.0)]), "load_kg is negative", "load_kg が負です"),
    ("above_max", "trajectories", corpus.trajectories([_trip(load_kg=1e6)]),
     "load_kg above max_load_kg 60000", "load_kg が max_load_kg 60000 を超えています"),
    ("abs_above_max", "geo_attributes",
     corpus.geo_attributes([{"feature_id": "b", "wkt": corpus.ROAD_LINK, "gradient_pct": -80.0}]),
     "|gradient_pct| above max_abs_gradient_pct 40", "gradient_pct の絶対値が max_abs_gradient_pct 40 を超えています"),
    ("outside_lower_exclusive", "geo_attributes",
     corpus.geo_attributes([{"feature_id": "b", "wkt": corpus.ROAD_LINK, "speed_limit_kmh": 0.0}]),
     "speed_limit_kmh outside (0, 200]", "speed_limit_kmh が範囲 (0, 200] の外です"),
    ("outside_range", "vehicles", corpus.vehicles([{**_VEHICLE, "model_year": 1800}]),
     "model_year outside [1950, 2100]", "model_year が範囲 [1950, 2100] の外です"),
    ("fuel_rate", "tachometer",
     corpus.tachometer([{"s": 0, "speed": 0.0, "fuel": 0.5}, {"s": 1, "speed": 10.0, "fuel": 1.0}, {"s": 3, "speed": 50.0, "fuel": 250.0}]),
     "450 l/h over 2.0 s, limit 150 l/h", "2.0 秒間で 450 l/h、上限 150 l/h"),
    ("values_allowed", "vehicles", corpus.vehicles([{**_VEHICLE, "fuel_type": "kerosene"}]),
     "allowed: gasoline, diesel, hybrid, lpg, cng, electric", "許可される値: gasoline, diesel, hybrid, lpg, cng, electric"),
]  # fmt: skip


# Kinds that the rule cases above cannot reach, with the test that pins their text.
KINDS_PINNED_ELSEWHERE = {
    # Written only when validation has no day-wide keys. tests/contract/test_repeated_rows.py pins it.
    "copy_of_partition_row",
    # Written only when validation does not know the partition's files; test_validate.py pins it.
    "row_of_partition",
    # Needs a trip above max_vertices_per_trip; tests/contract/test_vertex_limit.py pins it.
    "vertices_above_max",
}


def test_every_kind_has_a_rule_case() -> None:
    assert {case[0] for case in RULE_CASES} | KINDS_PINNED_ELSEWHERE == set(DETAIL_KINDS)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize(("kind", "dataset", "table", "english", "japanese"), RULE_CASES, ids=[case[0] for case in RULE_CASES])
def test_rule_writes_detail(kind: str, dataset: str, table: pa.Table, english: str, japanese: str) -> None:
    _, rejects = _validate(dataset, table)
    assert len(rejects) >= 1
    first = rejects.iloc[0]
    assert first["detail_kind"] == kind
    assert kind in REASON_DETAILS[ReasonCode(first["reason"])]
    assert first["detail"] == english
    assert render_details(rejects, "en")["detail"].iloc[0] == english
    assert render_details(rejects, "ja")["detail"].iloc[0] == japanese


@pytest.fixture(scope="module")
def broken_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    trips = [
        corpus.GOOD_TRIP,
        _trip(trip_id="speed", times_s=[0, 0, 10]),
        _trip(trip_id="count", times_s=[0, 10]),
        _trip(trip_id="load", load_kg=1e6),
        _trip(trip_id="range", wkt="LINESTRING (139.7 35.68, 139.7 95.0, 139.7 35.69)"),
        _trip(trip_id=None),
    ]
    tables = {**corpus.good_day(), "trajectories": corpus.trajectories(trips)}
    return corpus.write_day(tmp_path_factory.mktemp("day"), tables)


class TestValidateReport:
    def test_japanese_report_shows_japanese_details(self, broken_day: Path) -> None:
        report, balanced = validate_path(str(broken_day), load_settings(), lang="ja")
        assert balanced
        for text in ("頂点 0 から 1: 1.0 秒で 100 m、上限 200 km/h", "頂点 3 個に対して時刻 2 個", "trajectories/part-0.parquet の先頭を 0 として 5 行目",
                     "load_kg が max_load_kg 60000 を超えています", "頂点 1（x = 経度、y = 緯度）"):  # fmt: skip
            assert text in report
        for word in ENGLISH_WORDS:
            assert word not in report, word

    def test_english_report_shows_english_details(self, broken_day: Path) -> None:
        report, _ = validate_path(str(broken_day), load_settings(), lang="en")
        assert "vertex 0 to 1: 100 m in 1.0 s, limit 200 km/h" in report
        assert "2 timestamps for 3 vertices" in report
        assert "row 5 of trajectories/part-0.parquet, counting from 0" in report

    def test_rejects_file_keeps_english(self, broken_day: Path, tmp_path: Path) -> None:
        path = tmp_path / "rejects.parquet"
        validate_path(str(broken_day), load_settings(), lang="ja", rejects_path=str(path))
        table = pq.read_table(path)
        assert table.column_names == list(REJECT_COLUMNS)
        details = table.column("detail").to_pylist()
        assert "vertex 0 to 1: 100 m in 1.0 s, limit 200 km/h" in details
        assert not any(_has_non_ascii(text) for text in details)
