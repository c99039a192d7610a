"""Shared fixtures of the emission model tests: loaded models (loading reads the data files)."""

from __future__ import annotations

import pytest

from compute.emissions import EmissionSettings, load_model
from compute.emissions.model import EmissionModel


@pytest.fixture(scope="session")
def model() -> EmissionModel:
    """Default model."""
    return load_model(EmissionSettings())


@pytest.fixture(scope="session")
def model_no_gap() -> EmissionModel:
    """Model whose T2/T3 residual gap is 1, so profile tiers return catalog-basis fuel."""
    return load_model(EmissionSettings(gap_explained_by_profile=1.0))
