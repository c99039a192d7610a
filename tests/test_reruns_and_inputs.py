"""Reruns against a changed or missing delivery, runs without fetch, and sample days written over older ones."""

from __future__ import annotations

import datetime as dt
import pickle
import shlex
import shutil
import socket
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from compute import phases
from compute.i18n import OperatorError
from compute.report import RunSummary, render_text
from compute.sample import SampleSpec, write_sample_day
from compute.settings import load_settings
from compute.storage import DeliveryError, Store
from tests.conftest import RUN_DATE, write_profile


def _run(tmp_path: Path, **kwargs: object) -> phases.DailyRun:
    profile = write_profile(tmp_path / "profile.yaml", tmp_path / "data")
    return phases.DailyRun.create(load_settings(str(profile)), RUN_DATE, **kwargs)  # type: ignore[arg-type]


def _input(tmp_path: Path) -> Path:
    return tmp_path / "data" / "client" / "input" / RUN_DATE.strftime("%Y%m%d")


class TestFetchGuards:
    def test_missing_delivery_explains_itself(self, tmp_path: Path) -> None:
        with pytest.raises(DeliveryError) as info:
            phases.fetch(_run(tmp_path))
        assert info.value.code == "delivery_missing"
        assert "2026-12-01" in info.value.message("ja")
        assert "納品が見つかりません" in info.value.message("ja")
        assert "No delivery found" in str(info.value)

    def test_changed_input_is_not_skipped(self, tmp_path: Path) -> None:
        write_sample_day(Store(str(_input(tmp_path))), RUN_DATE, SampleSpec(trips=12, vertices_per_trip=6))
        first = phases.fetch(_run(tmp_path))
        assert not first.skipped

        assert phases.fetch(_run(tmp_path)).skipped
        write_sample_day(Store(str(_input(tmp_path))), RUN_DATE, SampleSpec(trips=30, vertices_per_trip=6))
        with pytest.raises(DeliveryError, match="--force") as info:
            phases.fetch(_run(tmp_path))
        assert info.value.code == "input_changed"
        assert not phases.fetch(_run(tmp_path, force=True)).skipped


class TestRawAsFetched:
    """Validate reads every object below raw/, so raw/ must be what fetch verified."""

    @pytest.mark.parametrize(("change", "shown"), [("added", "trajectories/zz-extra.parquet"), ("resized", "vehicles/")])
    def test_changed_raw_stops_validate(self, tmp_path: Path, change: str, shown: str) -> None:
        write_sample_day(Store(str(_input(tmp_path))), RUN_DATE, SampleSpec(trips=12, vertices_per_trip=6))
        phases.fetch(_run(tmp_path))
        raw = _run(tmp_path).store("raw")
        if change == "added":
            raw.write_bytes("trajectories/zz-extra.parquet", raw.read_bytes(next(n for n in raw.list() if n.startswith("trajectories/"))))
        else:
            vehicles = next(n for n in raw.list() if n.startswith("vehicles/"))
            raw.write_bytes(vehicles, raw.read_bytes(vehicles) + b"\0")

        with pytest.raises(OperatorError) as info:
            phases.validate(_run(tmp_path), client=None)  # type: ignore[arg-type]

        assert info.value.key == "phases.raw_changed"
        assert shown in info.value.message("en")
        assert "--force --phases fetch,validate" in info.value.message("ja")

    def test_fetch_removes_stale_raw_objects(self, tmp_path: Path) -> None:
        write_sample_day(Store(str(_input(tmp_path))), RUN_DATE, SampleSpec(trips=12, vertices_per_trip=6))
        phases.fetch(_run(tmp_path))
        raw = _run(tmp_path).store("raw")
        raw.write_bytes("trajectories/zz-extra.parquet", b"left from an earlier delivery")
        # temp/ expires after 7 days and takes the phase markers with it: fetch runs again over the old raw/.
        _run(tmp_path).store("temp").remove("_phases")

        fetched = phases.fetch(_run(tmp_path))

        assert fetched.counts["removed"] == 1
        assert sorted(raw.list()) == sorted(Store(str(_input(tmp_path))).list())


class TestInputGoneAfterFetch:
    """A client that removes its delivered day must not cost us the verified raw copy."""

    def _fetched(self, tmp_path: Path) -> Path:
        write_sample_day(Store(str(_input(tmp_path))), RUN_DATE, SampleSpec(trips=12, vertices_per_trip=6))
        phases.fetch(_run(tmp_path))
        raw = _run(tmp_path).store("raw")
        assert raw.list()
        gone = tmp_path / "moved-away"
        shutil.move(str(_input(tmp_path)), str(gone))
        return gone

    def test_forced_rerun_keeps_the_raw_copy(self, tmp_path: Path) -> None:
        gone = self._fetched(tmp_path)
        raw = _run(tmp_path).store("raw")
        before = raw.list()
        with pytest.raises(DeliveryError) as info:
            phases.fetch(_run(tmp_path, force=True))
        assert info.value.code == "delivery_missing"
        assert raw.list() == before
        # With the delivery back, the forced rerun copies it again.
        shutil.move(str(gone), str(_input(tmp_path)))
        assert not phases.fetch(_run(tmp_path, force=True)).skipped
        assert raw.list() == before

    def test_rerun_skips_fetch_input_absent(self, tmp_path: Path) -> None:
        self._fetched(tmp_path)
        events: list[tuple[str, dict[str, object]]] = []
        profile = write_profile(tmp_path / "profile.yaml", tmp_path / "data")
        run = phases.DailyRun.create(load_settings(str(profile)), RUN_DATE, on_event=lambda name, fields: events.append((name, fields)))
        assert phases.fetch(run).skipped
        assert ("input_unchecked", {"phase": "fetch", "status": "input_absent", "url": run.store("input").url}) in events
        assert phases.check_raw_copy_current(run).status == "input_absent"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestRunsWithoutFetch:
    """Phases after fetch, run alone, compare the client's input with the fetched copy."""

    def _fetched(self, tmp_path: Path) -> None:
        write_sample_day(Store(str(_input(tmp_path))), RUN_DATE, SampleSpec(trips=12, vertices_per_trip=6))
        phases.fetch(_run(tmp_path))

    def test_unchanged_input_passes(self, tmp_path: Path) -> None:
        self._fetched(tmp_path)
        check = phases.check_raw_copy_current(_run(tmp_path, force=True))
        assert check.status == "unchanged"

    def test_changed_input_stops_even_with_force(self, tmp_path: Path) -> None:
        self._fetched(tmp_path)
        write_sample_day(Store(str(_input(tmp_path))), RUN_DATE, SampleSpec(trips=30, vertices_per_trip=6))
        with pytest.raises(phases.InputChangedError) as info:
            phases.check_raw_copy_current(_run(tmp_path, force=True))
        assert info.value.code == "input_changed"
        assert info.value.changes.resized
        japanese, english = info.value.message("ja"), info.value.message("en")
        assert "fetch を含めて、例えば次のように --force で再実行" in japanese
        assert "サイズ変更" in japanese
        assert "resized" not in japanese
        assert "Rerun with the fetch phase and --force" in english
        assert "resized" in english

    def test_added_and_removed_files_are_named(self, tmp_path: Path) -> None:
        self._fetched(tmp_path)
        folder = _input(tmp_path) / "tachometer"
        first = sorted(folder.iterdir())[0]
        first.rename(folder / "part-renamed.parquet")
        with pytest.raises(phases.InputChangedError) as info:
            phases.check_raw_copy_current(_run(tmp_path))
        assert info.value.changes.added == ("tachometer/part-renamed.parquet",)
        assert info.value.changes.removed == (f"tachometer/{first.name}",)
        assert "追加 1 件: tachometer/part-renamed.parquet" in info.value.message("ja")

    def test_error_survives_pickling(self, tmp_path: Path) -> None:
        error = phases.InputChangedError("/in/", "2026-12-01", phases.InputChanges(resized=("a.parquet",)), False)
        again = pickle.loads(pickle.dumps(error))
        assert again.message("ja") == error.message("ja")
        assert isinstance(again, DeliveryError)

    def test_input_gone_is_reported_not_raised(self, tmp_path: Path) -> None:
        self._fetched(tmp_path)
        shutil.rmtree(_input(tmp_path))
        assert phases.check_raw_copy_current(_run(tmp_path)).status == "input_absent"

    def test_unreachable_input_is_reported(self, tmp_path: Path) -> None:
        self._fetched(tmp_path)
        s3_input = {
            "storage": {
                "input": "s3://client-in/input/{yyyymmdd}/",
                "options": {"input": {
                    "endpoint_url": f"http://127.0.0.1:{_closed_port()}", "key": "test-key", "secret": "test-secret",
                    "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1},
                }},
            }
        }
        profile = write_profile(tmp_path / "s3-profile.yaml", tmp_path / "data", **s3_input)
        run = phases.DailyRun.create(load_settings(str(profile)), RUN_DATE)

        check = phases.check_raw_copy_current(run)

        assert check.status == "unreachable"
        assert check.url == "s3://client-in/input/20261201/"
        assert "127.0.0.1" in check.detail

    def test_no_fetch_record(self, tmp_path: Path) -> None:
        assert phases.check_raw_copy_current(_run(tmp_path)).status == "not_fetched"

    @pytest.mark.parametrize(("status", "expected"), [("unreachable", "確認できませんでした"), ("input_absent", "オブジェクトがない")])
    def test_summary_says_input_was_not_checked(self, status: str, expected: str) -> None:
        summary = RunSummary(run_date="2026-12-01", input_check={"status": status, "url": "s3://in/", "detail": "EndpointConnectionError"})
        assert expected in render_text(summary, "ja")
        assert "s3://in/" in render_text(summary, "en")
        assert "raw copy was used as it is" in render_text(summary, "en")


@pytest.mark.slow
def test_flow_without_fetch_stops_on_changed_input(tmp_path: Path, prefect_harness: None) -> None:
    from flows.daily import co2_daily

    profile = write_profile(tmp_path / "profile.yaml", tmp_path / "data")
    write_sample_day(Store(str(_input(tmp_path))), RUN_DATE, SampleSpec(trips=12, vertices_per_trip=6))
    assert co2_daily(run_date=RUN_DATE, profile=str(profile), phases=["fetch"])["phases"][0]["phase"] == "fetch"
    write_sample_day(Store(str(_input(tmp_path))), RUN_DATE, SampleSpec(trips=30, vertices_per_trip=6))

    state = co2_daily(run_date=RUN_DATE, profile=str(profile), force=True, phases=["validate", "compute"], return_state=True)

    assert state.is_failed()
    with pytest.raises(phases.InputChangedError):
        state.result()
    temp = tmp_path / "data" / "lake" / "temp" / RUN_DATE.strftime("%Y%m%d")
    assert not (temp / "_phases" / "validate.json").exists()


class TestSampleOverwrite:
    def test_smaller_day_replaces_larger(self, tmp_path: Path) -> None:
        store = Store(str(tmp_path / "day"))
        write_sample_day(store, dt.date(2026, 12, 1), SampleSpec(trips=40, vertices_per_trip=4, trips_per_file=15))
        assert len(store.list("trajectories")) == 4
        write_sample_day(store, dt.date(2026, 12, 1), SampleSpec(trips=10, vertices_per_trip=4, trips_per_file=15))
        assert sorted(store.list("trajectories")) == ["trajectories/part-00000.parquet", "trajectories/part-defects.parquet"]


@pytest.mark.slow
def test_missing_delivery_is_not_retried(tmp_path: Path, prefect_harness: None) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName

    from flows.daily import co2_daily

    profile = write_profile(tmp_path / "profile.yaml", tmp_path / "data")
    state = co2_daily(run_date=RUN_DATE, profile=str(profile), return_state=True)
    assert state.is_failed()
    with pytest.raises(DeliveryError):
        state.result()
    with get_client(sync_client=True) as client:
        fetches = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])),
                                        task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="fetch")))
    # One fetch run, ran once: a missing delivery is not retried (a retry would wait 10 s first).
    assert [(run.run_count, run.state_type.value) for run in fetches] == [(1, "FAILED")]


def test_forced_fetch_without_input_keeps_markers(tmp_path: Path) -> None:
    """A forced fetch that finds no delivery changes nothing, so the next plain run still skips fetch."""
    write_sample_day(Store(str(_input(tmp_path))), RUN_DATE, SampleSpec(trips=12, vertices_per_trip=6))
    phases.fetch(_run(tmp_path))
    shutil.move(str(_input(tmp_path)), str(tmp_path / "moved-away"))

    with pytest.raises(DeliveryError):
        phases.fetch(_run(tmp_path, force=True))

    assert phases.fetch(_run(tmp_path)).skipped


@pytest.mark.slow
def test_suggested_rerun_keeps_profile_and_language(tmp_path: Path, prefect_harness: None, capsys: pytest.CaptureFixture[str]) -> None:
    """The command that the input-changed error suggests runs on the same profile, in the same language."""
    from flows import cli

    profile = write_profile(tmp_path / "profile.yaml", tmp_path / "data")
    write_sample_day(Store(str(_input(tmp_path))), RUN_DATE, SampleSpec(trips=12, vertices_per_trip=6))
    prefix = ["--lang", "en", "--profile", str(profile), "run", "--date", "2026-12-01"]
    assert cli.main([*prefix, "--phases", "fetch"]) == 0
    write_sample_day(Store(str(_input(tmp_path))), RUN_DATE, SampleSpec(trips=30, vertices_per_trip=6))
    capsys.readouterr()

    assert cli.main([*prefix, "--phases", "validate"]) == 1

    err = capsys.readouterr().err
    assert "so the raw copy is out of date" in err
    # On a line of its own, so that selecting the line copies the command and nothing else.
    assert f"for example:\n  {shlex.join(['lm-co2', *prefix])} --force\n" in err
    # Outside the command, messages suggest the plain command.
    error = phases.InputChangedError("/in/", "2026-12-01", phases.InputChanges(resized=("a.parquet",)), False)
    assert error.message("en").endswith("for example:\n  lm-co2 run --date 2026-12-01 --force")


def test_damaged_raw_page_names_file(tmp_path: Path) -> None:
    # A raw file damaged after the fetch with its size kept: the footer reads, a data page does not.
    from compute.cluster import open_cluster
    from compute.contract import ContractError, ErrorCode
    from compute.settings import ClusterSettings

    write_sample_day(Store(str(_input(tmp_path))), RUN_DATE, SampleSpec(trips=40, vertices_per_trip=30, trips_per_file=40))
    phases.fetch(_run(tmp_path))
    raw = _run(tmp_path).store("raw")
    name = next(n for n in raw.list() if n.startswith("trajectories/"))
    data = bytearray(raw.read_bytes(name))
    # The compressed values of the geometry column, past its page header.
    row_group = pq.ParquetFile(raw.path(name)).metadata.row_group(0)
    geometry = next(row_group.column(i) for i in range(row_group.num_columns) if row_group.column(i).path_in_schema == "geometry")
    start = (geometry.dictionary_page_offset or geometry.data_page_offset) + 64
    data[start:start + 256] = b"\xff" * 256
    Path(raw.path(name)).write_bytes(bytes(data))
    # validate compares raw/ with the fetch marker by name and size only, so the damage reaches the readers.
    with open_cluster(ClusterSettings(n_workers=1, memory_limit="1GiB")) as client, pytest.raises(ContractError) as info:
        phases.validate(_run(tmp_path, force=True), client)

    assert info.value.code is ErrorCode.FILE_UNREADABLE
    assert name in info.value.message("ja")
