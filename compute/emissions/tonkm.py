"""Improved ton-km method (改良トンキロ法) of the Japanese logistics guideline.

``ln y = a - b * ln(x / 100) - c * ln(z)`` with y the fuel per ton-km (L/t-km), x the load factor
in percent and z the maximum payload in kg. The fuel per vehicle-km is therefore
``y * (x / 100) * z / 1000``, proportional to ``(x / 100) ** (1 - b)``: that exponent is the load
correction the model applies to trucks.
"""

from __future__ import annotations

import numpy as np


def fuel_l_per_tkm(
    load_factor: np.ndarray | float,
    max_payload_kg: np.ndarray | float,
    a: np.ndarray | float,
    b: np.ndarray | float,
    c: np.ndarray | float,
) -> np.ndarray:
    """Return y (L per t-km) for a load factor given as a fraction (0.5 = 50 %)."""
    load = np.asarray(load_factor, dtype="float64")
    payload = np.asarray(max_payload_kg, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.exp(a - b * np.log(load) - c * np.log(payload))


def fuel_l_per_km(
    load_factor: np.ndarray | float,
    max_payload_kg: np.ndarray | float,
    a: np.ndarray | float,
    b: np.ndarray | float,
    c: np.ndarray | float,
) -> np.ndarray:
    """Return the fuel per vehicle-km (L/km) implied by the improved ton-km formula."""
    tonnes = np.asarray(load_factor, dtype="float64") * np.asarray(max_payload_kg, dtype="float64") / 1000.0
    return fuel_l_per_tkm(load_factor, max_payload_kg, a, b, c) * tonnes
