"""Shared fixtures: an offline process environment, Prefect's test harness, sample days.

The environment is set before any test module imports Prefect, gcsfs or boto: no telemetry, no
cloud metadata probes, and gcsfs without its bucket-layout lookup (it hangs against emulators).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

OFFLINE_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_GCE_CHECK": "True",
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    "DASK_LOGGING__DISTRIBUTED": "warning",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}
for _key, _value in OFFLINE_ENV.items():
    os.environ[_key] = _value
for _key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "GOOGLE_APPLICATION_CREDENTIALS"):
    os.environ.pop(_key, None)

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "real"
RUN_DATE = dt.date(2026, 12, 1)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A temporary Prefect server with its own SQLite database, for the whole session."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def write_profile(path: Path, data_dir: Path, **extra: object) -> Path:
    """Write a local profile whose storage lives under ``data_dir``; ``extra`` adds YAML sections."""
    import yaml

    profile = {
        "profile": "test",
        "language": "en",
        "data_dir": str(data_dir),
        "storage": {
            "input": "{data_dir}/client/input/{yyyymmdd}/",
            "raw": "{data_dir}/lake/raw/{yyyymmdd}/",
            "temp": "{data_dir}/lake/temp/{yyyymmdd}/",
            "processed": "{data_dir}/lake/processed/{yyyymmdd}/",
            "output": "{data_dir}/client/output/{yyyymmdd}/",
        },
        "cluster": {"kind": "local", "n_workers": 2, "threads_per_worker": 1, "memory_limit": "2GiB"},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(profile.get(key), dict):
            profile[key].update(value)  # type: ignore[union-attr]
        else:
            profile[key] = value
    path.write_text(yaml.safe_dump(profile, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def model() -> Any:
    """Default emission model (loading reads the data files once per session)."""
    from compute.emissions import EmissionSettings, load_model

    return load_model(EmissionSettings())


@pytest.fixture(scope="session")
def model_no_gap() -> Any:
    """Emission model whose T2/T3 residual gap is 1, so profile tiers return catalog-basis fuel."""
    from compute.emissions import EmissionSettings, load_model

    return load_model(EmissionSettings(gap_explained_by_profile=1.0))
