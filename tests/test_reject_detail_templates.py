"""Reject details rendered from templates, with parameters and rows that make odd values.

The templates format numbers with ``:g`` and ``:.0f``; the parameters travel through JSON. These
tests feed NaN, infinities, negative zero, large integers and strings with braces, ``%`` and
Japanese text. Rendering must neither raise nor leave a placeholder, and every row of an edited
sample day must be either accepted or rejected exactly once.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pydantic
import pytest
import yaml

from compute.contract import (
    DETAIL_KINDS,
    DETAIL_PARAMS,
    ContractSettings,
    Detail,
    ValidationContext,
    conform_table,
    render_detail,
    render_details,
    to_frame,
    validate_rows,
)
from compute.sample import SampleSpec, write_sample_day
from compute.storage import Store

REPO_ROOT = Path(__file__).resolve().parents[1]
# Parameters formatted with a numeric format spec (":g", ":.0f", ":.1f") in some template.
NUMERIC = {"distance_m", "interval_s", "limit_kmh", "duration_s", "limit", "lower", "upper", "rate_l_per_h", "limit_l_per_h"}
ODD_NUMBERS = {"nan": math.nan, "inf": math.inf, "minus_inf": -math.inf, "minus_zero": -0.0, "two_pow_70": 2**70}
ODD_TEXTS = {"braces": "{column}{0}", "percent": "%s %d", "japanese": "車両・速度", "quote": "it's \"x\""}
PLACEHOLDER = re.compile(r"\{[a-z_]+(?::[^}]*)?\}")


def _params(kind: str, number: object, text: str) -> dict[str, object]:
    return {name: number if name in NUMERIC else text for name in DETAIL_KINDS[kind]}


@pytest.mark.parametrize("number_case", sorted(ODD_NUMBERS))
@pytest.mark.parametrize("text_case", sorted(ODD_TEXTS))
def test_odd_parameters_render(number_case: str, text_case: str) -> None:
    for kind in DETAIL_KINDS:
        detail = Detail(kind, _params(kind, ODD_NUMBERS[number_case], ODD_TEXTS[text_case]))
        for lang in ("ja", "en"):
            text = detail.text(lang)
            from_json = render_detail(kind, json.loads(detail.params_json()), lang)

            assert from_json == text
            assert PLACEHOLDER.search(text.replace(ODD_TEXTS[text_case], "")) is None, (kind, lang, text)


def test_text_parameters_kept_verbatim() -> None:
    detail = Detail("value_null", {"column": "{speed_kmh}%d"})

    assert detail.text("en") == "{speed_kmh}%d is null or blank"
    assert detail.text("ja").startswith("{speed_kmh}%d が空")


@pytest.fixture(scope="module")
def sample_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("s6_day")
    write_sample_day(Store(str(root)), dt.date(2026, 12, 1), SampleSpec(trips=40, vertices_per_trip=20))
    return root


def _edited_vehicles(sample_day: Path) -> pa.Table:
    table = pq.read_table(sample_day / "vehicles" / "part-00000.parquet")
    data = table.to_pydict()
    data["vehicle_id"][0] = "車両{0}%s"
    data["model_year"][1] = 1800
    data["catalog_fuel_economy_km_per_l"][2] = math.inf
    data["catalog_fuel_economy_km_per_l"][3] = math.nan
    data["catalog_fuel_economy_km_per_l"][4] = -0.0
    data["max_payload_kg"][5] = -1e308
    data["model_year"][6] = 2**62
    return pa.table(data, schema=table.schema)


def _edited_tachometer(sample_day: Path) -> pa.Table:
    table = pq.read_table(sample_day / "tachometer" / "part-00000.parquet")
    data = table.to_pydict()
    odd_speeds = [math.nan, math.inf, -math.inf, -0.0, 1e308, None]
    for position, speed in enumerate(odd_speeds):
        data["speed_kmh"][position] = speed
    data["fuel_ml"][10] = math.inf
    data["fuel_ml"][11] = -0.0
    data["fuel_ml"][12] = math.nan
    data["vehicle_id"][13] = "{vehicle_id}"
    data["vehicle_id"][14] = "%(x)s 車両"
    return pa.table(data, schema=table.schema)


@pytest.mark.parametrize("dataset", ["vehicles", "tachometer"])
def test_edited_rows_balance_and_render(sample_day: Path, dataset: str) -> None:
    table = _edited_vehicles(sample_day) if dataset == "vehicles" else _edited_tachometer(sample_day)
    settings = ContractSettings()
    frame = to_frame(dataset, conform_table(dataset, table, settings))
    vehicle_ids = pq.read_table(sample_day / "vehicles" / "part-00000.parquet").column("vehicle_id").to_pylist()

    accepted, rejects = validate_rows(dataset, frame, ValidationContext(known_vehicle_ids=vehicle_ids, settings=settings))

    assert len(accepted) + len(rejects) == len(frame) == table.num_rows
    assert len(rejects) >= 5
    for lang in ("ja", "en"):
        rendered = render_details(rejects, lang)
        assert len(rendered) == len(rejects)
        for text in rendered["detail"]:
            assert PLACEHOLDER.search(text) is None, text
    english = render_details(rejects, "en")["detail"].tolist()
    assert english == rejects["detail"].tolist()
    for encoded in rejects[DETAIL_PARAMS]:
        json.loads(encoded)


def _profile(tmp_path: Path, **thresholds: object) -> Path:
    storage = {name: "{data_dir}/" + name + "/{yyyymmdd}/" for name in ("input", "raw", "temp", "processed", "output")}
    profile = {"profile": "s6", "data_dir": str(tmp_path), "storage": storage, "contract": {"thresholds": thresholds}}
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(profile), encoding="utf-8")
    return path


def _validate_cli(profile: Path, day: Path) -> subprocess.CompletedProcess[str]:
    environment = {name: value for name, value in os.environ.items() if not name.upper().startswith("LMCO2_")}
    environment.update({"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "AWS_EC2_METADATA_DISABLED": "true",
                        "NO_GCE_CHECK": "True", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"})
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "--lang", "ja", "--profile", str(profile), "validate", str(day)],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300, check=False,
    )


def test_validate_cli_edited_day(sample_day: Path, tmp_path: Path) -> None:
    day = tmp_path / "day"
    Store(str(day)).fs.copy(str(sample_day), str(day), recursive=True)
    pq.write_table(_edited_vehicles(sample_day), day / "vehicles" / "part-00000.parquet")
    pq.write_table(_edited_tachometer(sample_day), day / "tachometer" / "part-00000.parquet")

    result = _validate_cli(_profile(tmp_path), day)
    output = result.stdout + result.stderr

    assert "Traceback" not in output
    assert "不一致" not in output
    assert "一致" in output
    assert PLACEHOLDER.search(output.replace("{vehicle_id}", "")) is None


def test_huge_model_year_limit_is_refused() -> None:
    """A model-year limit beyond int64 comparisons is refused when the settings load."""
    with pytest.raises(pydantic.ValidationError, match="max_model_year"):
        ContractSettings(thresholds={"max_model_year": 10**400})


def test_huge_model_year_cli(sample_day: Path, tmp_path: Path) -> None:
    result = _validate_cli(_profile(tmp_path, max_model_year=10**400), sample_day)
    output = result.stdout + result.stderr

    assert "Traceback" not in output
    assert "max_model_year" in output


def test_large_limits_are_written_out() -> None:
    """A limit of ten million or more is written as digits, not in exponent notation."""
    text = Detail("outside_range", {"column": "model_year", "lower": 1950, "upper": 10_000_000}).text("en")
    assert "10000000" in text
    assert "e+07" not in text
