"""The spherical screen of the speed rules decides exactly as the WGS 84 geodesic alone.

Spherical distances screen the vertex pairs and trips, and only those within ``SPHERE_MARGIN``
of ``max_speed_kmh`` are measured on the ellipsoid. With a margin of 1 (every moving pair
measured on the ellipsoid) the rules are the geodesic ones, which gives the reference.
"""

from __future__ import annotations

import contract_corpus as corpus
import numpy as np
import pandas as pd
import pyarrow as pa
import pyproj
import pytest

from compute.contract import ContractSettings, ValidationContext, conform_table, rules_time, to_frame, validate_rows

GEOD = pyproj.Geod(ellps="WGS84")


@pytest.mark.parametrize("scale_deg", [1e-5, 1e-3, 0.1, 1.0, 10.0, 90.0, 180.0])
def test_sphere_error_below_margin(scale_deg: float) -> None:
    rng = np.random.default_rng(int(scale_deg * 1e5) % 2**32)
    n = 100_000
    lon = rng.uniform(-180, 180, n)
    lat = rng.uniform(-90, 90, n)
    # Pairs (2i, 2i + 1) of the flat vertex list, scale_deg apart at most.
    coords = np.empty((2 * n, 2))
    coords[0::2] = np.column_stack([lon, lat])
    coords[1::2] = np.column_stack([lon + rng.uniform(-scale_deg, scale_deg, n), np.clip(lat + rng.uniform(-scale_deg, scale_deg, n), -90, 90)])

    sphere = rules_time.sphere_distances(coords)[0::2]
    ellipsoid = rules_time.geodesic(coords, np.arange(0, 2 * n, 2))

    moving = ellipsoid > 0
    relative = np.abs(sphere[moving] - ellipsoid[moving]) / ellipsoid[moving]
    assert relative.max() < 0.006 < rules_time.SPHERE_MARGIN


def _trips(rng: np.random.Generator, n_trips: int, with_times: bool) -> pa.Table:
    """Trips at about 200 km/h: each pair's speed is drawn between 190 and 210 km/h, some exactly near 200."""
    rows = []
    for i in range(n_trips):
        n = int(rng.integers(3, 12))
        lat0 = rng.uniform(-60, 60)
        step_s = 10.0
        speeds = rng.uniform(190, 210, n - 1) if i % 3 else np.full(n - 1, rng.uniform(199.0, 201.0))
        # Move north: metres per degree of latitude near lat0 on the ellipsoid, about 111 km.
        metres = speeds / 3.6 * step_s
        lats = lat0 + np.concatenate([[0.0], np.cumsum(metres / 111_000.0)])
        lons = np.full(n, rng.uniform(-170, 170)) + np.linspace(0, rng.uniform(0, 0.01), n)
        wkt = "LINESTRING (" + ", ".join(f"{x:.9f} {y:.9f}" for x, y in zip(lons, lats, strict=True)) + ")"
        row = {"trip_id": f"T{i}", "vehicle_id": "V1", "wkt": wkt}
        if with_times:
            row["times_s"] = list(np.arange(n) * step_s)
        else:
            row["start_ms"] = corpus.T0_MS
            row["end_ms"] = corpus.T0_MS + int((n - 1) * step_s * 1000)
        rows.append(row)
    return corpus.trajectories(rows)


def _rejects(table: pa.Table) -> pd.DataFrame:
    settings = ContractSettings()
    frame = to_frame("trajectories", conform_table("trajectories", table, settings))
    context = ValidationContext(known_vehicle_ids=np.array(["V1"], dtype=object), settings=settings)
    accepted, rejects = validate_rows("trajectories", frame, context)
    assert len(accepted) + len(rejects) == len(frame)
    return rejects


@pytest.mark.parametrize("with_times", [True, False], ids=["vertex-speeds", "average-speeds"])
def test_screened_rules_equal_geodesic_rules(with_times: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    table = _trips(np.random.default_rng(11 if with_times else 12), 300, with_times)

    screened = _rejects(table)
    monkeypatch.setattr(rules_time, "SPHERE_MARGIN", 1.0)
    reference = _rejects(table)

    assert 30 < len(reference) < 290
    assert set(reference["reason"]) == {"speed_implausible"}
    pd.testing.assert_frame_equal(screened, reference)


def _trip_at(speed_kmh: float, with_times: bool) -> pa.Table:
    """One trip of three vertices 10 s apart, each step exactly ``speed_kmh`` on the WGS 84 ellipsoid."""
    step_m = speed_kmh / 3.6 * 10.0
    lon, lat = [139.7], [35.68]
    for _ in range(2):
        x, y, _ = GEOD.fwd(lon[-1], lat[-1], 60.0, step_m)
        lon.append(float(x))
        lat.append(float(y))
    # repr keeps every bit of the coordinates through the WKT of the corpus builder.
    row = {"trip_id": "T0", "vehicle_id": "V1", "wkt": "LINESTRING (" + ", ".join(f"{x!r} {y!r}" for x, y in zip(lon, lat, strict=True)) + ")"}
    if with_times:
        row["times_s"] = [0.0, 10.0, 20.0]
    else:
        row["start_ms"] = corpus.T0_MS
        row["end_ms"] = corpus.T0_MS + 20_000
    return corpus.trajectories([row])


@pytest.mark.parametrize("with_times", [True, False], ids=["vertex-speeds", "average-speeds"])
def test_speed_at_limit_accepted_and_above_rejected(with_times: bool) -> None:
    # Rounding in the coordinates gives about 200.0000000075 km/h for a trip built at 200.
    assert _rejects(_trip_at(200.0, with_times)).empty
    rejects = _rejects(_trip_at(200.0 * (1 + 1e-6), with_times))
    assert list(rejects["reason"]) == ["speed_implausible"]
