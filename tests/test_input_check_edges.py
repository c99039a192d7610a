"""Hostile inputs for runs without fetch (the input check), the input-changed error and the
table artifacts of the daily flow.

The S3 input is the moto server of the production tests. A GCS input that rejects every request
is a small HTTP server on 127.0.0.1 that responds with the error body of the GCS JSON API.
"""

from __future__ import annotations

import json
import pickle
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from distributed.protocol import deserialize, serialize
from distributed.protocol import pickle as dask_pickle

from compute import phases
from compute.sample import SampleSpec, write_sample_day
from compute.settings import load_settings
from compute.storage import DeliveryError, Store
from flows.artifacts import ARTIFACT_ROWS_MAX, table_rows
from tests.conftest import RUN_DATE, write_profile
from tests.production.conftest import MotoS3, moto_s3  # noqa: F401 - the fixture is used by name

DAY = RUN_DATE.strftime("%Y%m%d")


def _fetched_locally(tmp_path: Path) -> Path:
    """Write a sample day to a local input, fetch it, and return the profile."""
    profile = write_profile(tmp_path / "profile.yaml", tmp_path / "data")
    settings = load_settings(str(profile))
    write_sample_day(Store(settings.url("input", RUN_DATE)), RUN_DATE, SampleSpec(trips=12, vertices_per_trip=6))
    phases.fetch(phases.DailyRun.create(settings, RUN_DATE))
    return profile


# -- a GCS input that rejects every request ------------------------------------------------------


class _RejectingGcs(BaseHTTPRequestHandler):
    """Handler that responds to every request with 401 and the JSON error body of the GCS API."""

    def _reject(self) -> None:
        body = json.dumps({"error": {"code": 401, "message": "Login Required", "errors": [{"reason": "required"}]}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _reject

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the name is the base class's
        pass


@pytest.fixture
def rejecting_gcs() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RejectingGcs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _gcs_input_profile(tmp_path: Path, endpoint_url: str) -> Path:
    gcs_input = {"storage": {"input": "gs://client-in/input/{yyyymmdd}/", "options": {"input": {"endpoint_url": endpoint_url, "token": "anon"}}}}
    return write_profile(tmp_path / "gcs-profile.yaml", tmp_path / "data", **gcs_input)


class TestUnlistableInput:
    def test_gcs_http_error_is_reported_as_unreachable(self, tmp_path: Path, rejecting_gcs: str) -> None:
        """gcsfs raises its own HttpError (no OSError) for a 401: the run reports the input as unchecked."""
        _fetched_locally(tmp_path)
        run = phases.DailyRun.create(load_settings(str(_gcs_input_profile(tmp_path, rejecting_gcs))), RUN_DATE)

        check = phases.check_raw_copy_current(run)

        assert check.status == "unreachable"
        assert check.url == f"gs://client-in/input/{DAY}/"
        assert "401" in check.detail

    @pytest.mark.slow
    def test_flow_without_fetch_continues_on_gcs_http_error(self, tmp_path: Path, rejecting_gcs: str, prefect_harness: None) -> None:
        from flows.daily import co2_daily

        _fetched_locally(tmp_path)
        profile = _gcs_input_profile(tmp_path, rejecting_gcs)

        summary = co2_daily(run_date=RUN_DATE, profile=str(profile), phases=[])

        assert summary["input_check"]["status"] == "unreachable"
        assert "401" in summary["input_check"]["detail"]


# -- an S3 input (moto) ----------------------------------------------------------------------------


def _s3_run(tmp_path: Path, server: MotoS3) -> phases.DailyRun:
    s3_input = {"storage": {"input": f"s3://{server.input_bucket}/{tmp_path.name}/input/{{yyyymmdd}}/",
                            "options": {"input": server.options("reader")}}}
    profile = write_profile(tmp_path / "s3-profile.yaml", tmp_path / "data", **s3_input)
    return phases.DailyRun.create(load_settings(str(profile)), RUN_DATE)


def _s3_key(tmp_path: Path, name: str) -> str:
    return f"{tmp_path.name}/input/{DAY}/{name}"


class TestS3Input:
    @pytest.fixture
    def fetched(self, tmp_path: Path, moto_s3: MotoS3) -> phases.DailyRun:  # noqa: F811 - the imported fixture
        run = _s3_run(tmp_path, moto_s3)
        write_sample_day(Store(run.settings.url("input", RUN_DATE), moto_s3.options("admin")), RUN_DATE, SampleSpec(trips=8, vertices_per_trip=5))
        phases.fetch(run)
        assert phases.check_raw_copy_current(run).status == "unchanged"
        return run

    def test_extra_zero_byte_object_is_a_change(self, fetched: phases.DailyRun, tmp_path: Path, moto_s3: MotoS3) -> None:  # noqa: F811
        moto_s3.client().put_object(Bucket=moto_s3.input_bucket, Key=_s3_key(tmp_path, "_SUCCESS"), Body=b"")

        with pytest.raises(phases.InputChangedError) as info:
            phases.check_raw_copy_current(fetched)

        assert info.value.changes.added == ("_SUCCESS",)
        assert "追加 1 件: _SUCCESS" in info.value.message("ja")
        assert "1 new: _SUCCESS" in info.value.message("en")

    def test_object_the_input_lacks_now_is_named(self, fetched: phases.DailyRun, tmp_path: Path, moto_s3: MotoS3) -> None:  # noqa: F811
        gone = "tachometer/part-00000.parquet"
        moto_s3.client().delete_object(Bucket=moto_s3.input_bucket, Key=_s3_key(tmp_path, gone))

        with pytest.raises(phases.InputChangedError) as info:
            phases.check_raw_copy_current(fetched)

        assert info.value.changes.removed == (gone,)
        assert not info.value.changes.added
        assert not info.value.changes.resized
        assert f"削除 1 件: {gone}" in info.value.message("ja")

    def test_folder_marker_in_the_input_is_not_data(self, tmp_path: Path, moto_s3: MotoS3) -> None:  # noqa: F811
        run = _s3_run(tmp_path, moto_s3)
        write_sample_day(Store(run.settings.url("input", RUN_DATE), moto_s3.options("admin")), RUN_DATE, SampleSpec(trips=8, vertices_per_trip=5))
        moto_s3.client().put_object(Bucket=moto_s3.input_bucket, Key=_s3_key(tmp_path, "trajectories/"), Body=b"")

        phases.fetch(run)

        assert phases.check_raw_copy_current(run).status == "unchanged"


# -- the input-changed error --------------------------------------------------------------------


class TestInputChangedError:
    @pytest.mark.parametrize("fetch_selected", [False, True])
    def test_survives_dask_and_prefect_serialisation(self, fetch_selected: bool) -> None:
        changes = phases.InputChanges(added=("trajectories/{odd}.parquet", "b.parquet"), removed=("c.parquet",))
        error = phases.InputChangedError("s3://in/20261201/", "2026-12-01", changes, fetch_selected)
        copies = {
            "pickle": pickle.loads(pickle.dumps(error)),
            "cloudpickle": cloudpickle.loads(cloudpickle.dumps(error)),
            "dask pickle": dask_pickle.loads(dask_pickle.dumps(error)),
            "dask serialize": deserialize(*serialize(error)),
        }
        for name, copy in copies.items():
            assert type(copy) is phases.InputChangedError, name
            assert isinstance(copy, DeliveryError), name
            assert copy.changes == changes, name
            assert copy.fetch_selected is fetch_selected, name
            assert str(copy) == str(error), name
            for lang in ("ja", "en"):
                assert copy.message(lang) == error.message(lang), name

    def test_messages_name_the_first_path_and_the_counts(self) -> None:
        changes = phases.InputChanges(added=("trajectories/{odd}.parquet", "b.parquet"), removed=("c.parquet",), resized=("d.parquet",))
        error = phases.InputChangedError("s3://in/20261201/", "2026-12-01", changes, False)
        japanese, english = error.message("ja"), error.message("en")
        assert "追加 2 件: trajectories/{odd}.parquet ほか、削除 1 件: c.parquet、サイズ変更 1 件: d.parquet" in japanese
        assert "2 new: trajectories/{odd}.parquet and others, 1 gone: c.parquet, 1 resized: d.parquet" in english
        assert "fetch を含めて、例えば次のように --force で再実行" in japanese
        assert error.message("fr") == japanese  # an unknown language falls back to Japanese


# -- table artifacts -----------------------------------------------------------------------------


class TestTableRows:
    def test_short_chart_is_kept_whole(self) -> None:
        rows = [{"label": f"r{i}", "value": float(i % 7)} for i in range(ARTIFACT_ROWS_MAX)]
        assert table_rows("map", rows, "en") == (rows, "map")

    @pytest.mark.parametrize(("language", "expected"), [
        ("en", "map: the 500 largest values of 1,203 rows; all rows are in chart_values.json"),
        ("ja", "map: 1,203 行のうち値の大きい 500 行。全行は chart_values.json にあります"),
    ], ids=["en", "ja"])
    def test_long_chart_keeps_the_largest_values(self, language: str, expected: str) -> None:
        odd: list[Any] = [None, float("nan"), "n/a", [1], 10**400, -(10**400), float("inf"), "1e3", True]
        rows = [{"label": f"odd{i}", "value": value} for i, value in enumerate(odd)]
        rows += [{"label": f"r{i}", "value": float(i % 600)} for i in range(1_194)]

        kept, description = table_rows("map", rows, language)

        assert description == expected
        assert len(kept) == ARTIFACT_ROWS_MAX
        assert [row["label"] for row in kept[:4]] == ["odd4", "odd6", "odd7", "r599"]
        assert not {"odd0", "odd1", "odd2", "odd3", "odd5"} & {row["label"] for row in kept}
        values = [row["value"] for row in kept[3:]]
        assert values == sorted(values, reverse=True)

    def test_equal_values_keep_their_order(self) -> None:
        rows = [{"label": f"r{i}", "value": 1.0} for i in range(ARTIFACT_ROWS_MAX + 1)]
        kept, _ = table_rows("histogram", rows, "en")
        assert kept == rows[:ARTIFACT_ROWS_MAX]
