"""Read the versioned data files of ``compute/data`` into plain frames and arrays.

This module is the only place of the emission model that reads files. ``load_model`` calls it
once; the frames then travel inside the picklable model to the Dask workers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd
import yaml

CYCLE_FILES = ("wltc_3b", "udds", "hwfet", "us06")

# Status tags of the data files: C confirmed, S secondary source, D derived from C/S values,
# U unconfirmed, E engineering estimate. Outputs that used a U or E value carry an unconfirmed_* flag.
CONFIRMED_TAGS = frozenset({"C", "S", "D"})

_TABLE_FILES = {
    "co2_per_fuel": "factors/co2_per_fuel.csv",
    "ch4_n2o": "factors/ch4_n2o_per_km.csv",
    "gwp": "factors/gwp.csv",
    "wtt": "factors/wtt.csv",
    "grid": "factors/grid.csv",
    "tonkm": "factors/tonkm_coefficients.csv",
    "gap": "factors/gap_factors.csv",
    "tier_uncertainty": "factors/tier_uncertainty.csv",
    "road_load": "vehicles/road_load.csv",
    "idle_rates": "vehicles/idle_rates.csv",
    "powertrain": "vehicles/powertrain.csv",
    "default_fe": "vehicles/default_fuel_economy.csv",
}


def data_file_path(name: str) -> str:
    """Return the path of table ``name`` inside the repository, for error messages."""
    return f"compute/data/{_TABLE_FILES[name]}"


@dataclass(frozen=True)
class DataTables:
    """Contents of ``compute/data``: factor tables, class defaults, cycle traces and versions."""

    tables: dict[str, pd.DataFrame]
    cycles_m_per_s: dict[str, np.ndarray]
    versions: dict[str, str]


def read_data_tables() -> DataTables:
    """Read every data file of ``compute/data`` and return them with their versions.

    Returns
    -------
    DataTables
        Frames keyed by table name, 1 Hz cycle speeds (m/s) keyed by file stem, and the versions
        (``factor_table_version``, ``methodology_version``, ``data_sha256``).

    Raises
    ------
    ValueError
        If a data file lacks its ``status`` or ``source`` column or a status tag is unknown.
    """
    root = resources.files("compute.data")
    digest = hashlib.sha256()

    tables: dict[str, pd.DataFrame] = {}
    for name, relative in _TABLE_FILES.items():
        raw = root.joinpath(relative).read_bytes()
        digest.update(relative.encode() + b"\0" + raw)
        frame = pd.read_csv(root.joinpath(relative).open("rb"), dtype={"status": str})
        _check_provenance_columns(frame, relative)
        tables[name] = frame

    cycles: dict[str, np.ndarray] = {}
    for stem in CYCLE_FILES:
        relative = f"cycles/{stem}.csv"
        raw = root.joinpath(relative).read_bytes()
        digest.update(relative.encode() + b"\0" + raw)
        trace = pd.read_csv(root.joinpath(relative).open("rb"))
        cycles[stem] = trace["speed_m_per_s"].to_numpy(dtype="float64")

    version_doc = yaml.safe_load(root.joinpath("versions.yaml").read_text(encoding="utf-8"))
    versions = {
        "factor_table_version": str(version_doc["factor_table_version"]),
        "methodology_version": str(version_doc["methodology_version"]),
        "data_sha256": digest.hexdigest(),
    }
    return DataTables(tables=tables, cycles_m_per_s=cycles, versions=versions)


def _check_provenance_columns(frame: pd.DataFrame, relative: str) -> None:
    missing = {"status", "source"} - set(frame.columns)
    if missing:
        raise ValueError(f"data file {relative} must have columns status and source; missing {sorted(missing)}")
    unknown = set(frame["status"].dropna()) - {"C", "S", "D", "U", "E"}
    if unknown or frame["status"].isna().any():
        raise ValueError(f"data file {relative} has status tags outside C/S/D/U/E: {sorted(unknown)} or empty ones")
