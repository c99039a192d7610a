"""Trips of one vehicle that overlap in time are counted by compute and warned about in the summary."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

from compute import columns as c
from compute import phases, pipeline
from compute.i18n import message
from compute.plausibility import DayFacts, check_day, count_codes
from compute.sample import SampleSpec, write_sample_day
from compute.settings import load_settings
from compute.storage import Store

RUN_DATE = dt.date(2026, 12, 1)
MINUTE_MS = 60_000.0


def _index(rows: list[tuple[str, float, float]]) -> pipeline.TripIndex:
    """A trip index of (vehicle, start minute, end minute) rows."""
    frame = pd.DataFrame(
        {
            c.TRIP_ID: [f"T{i}" for i in range(len(rows))],
            c.VEHICLE_ID: [vehicle for vehicle, _, _ in rows],
            c.START_TIME: [start * MINUTE_MS for _, start, _ in rows],
            c.END_TIME: [end * MINUTE_MS for _, _, end in rows],
            "piece": 0,
        }
    )
    return pipeline.build_trip_index([frame])


class TestCount:
    def test_adjacent_trips_not_counted(self) -> None:
        # V1's trips touch, and the second shares half a minute with the first; V2 drives at the same time.
        index = _index([("V1", 0, 30), ("V1", 29.5, 60), ("V2", 0, 60), ("V1", 60, 90)])
        assert pipeline.overlapping_trips(index) == {"trips": 0, "vehicles": 0}

    def test_overlap_with_long_trip_counts(self) -> None:
        # The third trip starts inside the first, which is longer than the second.
        index = _index([("V1", 0, 120), ("V1", 10, 20), ("V1", 30, 40), ("V2", 5, 8), ("V2", 5, 9)])
        assert pipeline.overlapping_trips(index) == {"trips": 3, "vehicles": 2}

    def test_rows_in_any_order(self) -> None:
        rows = [("V1", 0, 120), ("V1", 10, 20), ("V1", 30, 40), ("V2", 5, 8), ("V2", 5, 9)]
        shuffled = [rows[i] for i in np.random.default_rng(4).permutation(len(rows))]
        assert pipeline.overlapping_trips(_index(shuffled)) == pipeline.overlapping_trips(_index(rows))

    def test_no_trips(self) -> None:
        assert pipeline.overlapping_trips(_index([])) == {"trips": 0, "vehicles": 0}


def test_warning_text_in_both_languages() -> None:
    warnings = check_day(pd.DataFrame(columns=[c.TRIP_ID]), pd.DataFrame(columns=[c.VEHICLE_ID, c.VEHICLE_CLASS]),
                         DayFacts(overlapping_trips=1_500, overlapping_vehicles=3))
    assert count_codes(warnings)["trips_overlap"] == 1
    warning = next(w for w in warnings if w.code == "trips_overlap")
    assert warning.text("en").startswith("1,500 trips start before an earlier trip of the same vehicle ends (3 vehicles, overlaps above 60 s).")
    assert warning.text("ja").startswith("1,500 トリップが、同じ車両の前のトリップが終わる前に始まっています（3 台、重なりが 60 秒を超えるもの）。")
    assert message("warning.trips_overlap", "ja", trips=1, vehicles=1, tolerance_s=60.0) != message("warning.trips_overlap", "en", trips=1, vehicles=1, tolerance_s=60.0)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as dask_client:
        yield dask_client


def test_compute_counts_simultaneous_trips(tmp_path: Path, client: Client) -> None:
    settings = load_settings("local", environ={}, overrides={"data_dir": str(tmp_path)})
    inputs = Store(settings.url("input", RUN_DATE))
    write_sample_day(inputs, RUN_DATE, SampleSpec(trips=40, vertices_per_trip=20, grid_cells=24))
    path = inputs.path("trajectories/part-00000.parquet")
    table = pq.read_table(path)
    # Trip 3 gets trip 2's vehicle and starts one minute after trip 2, keeping its own time steps.
    # (The sample's planted defects repeat the key of trip 0, so that trip is rejected.)
    vehicles = table[c.VEHICLE_ID].to_pylist()
    vehicles[3] = vehicles[2]
    times = table[c.TIMESTAMPS].to_pylist()
    times[3] = [t - times[3][0] + times[2][0] + dt.timedelta(minutes=1) for t in times[3]]
    table = table.set_column(table.schema.get_field_index(c.VEHICLE_ID), c.VEHICLE_ID, pa.array(vehicles, table[c.VEHICLE_ID].type))
    table = table.set_column(table.schema.get_field_index(c.TIMESTAMPS), c.TIMESTAMPS, pa.array(times, table[c.TIMESTAMPS].type))
    for name in (c.START_TIME, c.END_TIME):
        if name in table.column_names:
            table = table.set_column(table.schema.get_field_index(name), name, pa.nulls(len(table), table[name].type))
    pq.write_table(table, path)
    assert min(times[2][-1], times[3][-1]) - times[3][0] > dt.timedelta(minutes=2)
    run = phases.DailyRun.create(settings, RUN_DATE, force=True)
    phases.fetch(run)
    phases.validate(run, client)

    result = phases.compute(run, client)

    assert result.counts["overlapping_trips"] == {"trips": 1, "vehicles": 1}
