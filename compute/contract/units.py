"""Source units a column mapping may declare, and the factor to the canonical unit.

A canonical value is ``source_value * factor``, except for units listed in :data:`INVERSE_UNITS`
where it is ``factor / source_value`` (fuel consumption in l/100 km to fuel economy in km/l).
"""

from __future__ import annotations

# Per quantity kind: the canonical unit first, then each accepted source unit and its factor.
UNIT_FACTORS: dict[str, dict[str, float]] = {
    "speed": {"km/h": 1.0, "m/s": 3.6, "mph": 1.609344, "kn": 1.852},
    "mass": {"kg": 1.0, "t": 1000.0, "lb": 0.45359237},
    "volume": {"ml": 1.0, "l": 1000.0, "gal_us": 3785.411784},
    "fuel_economy": {"km/l": 1.0, "mpg_us": 0.425143707, "mpg_imp": 0.354006044, "l/100km": 100.0},
    "length": {"m": 1.0, "ft": 0.3048},
    "percent": {"%": 1.0, "ratio": 100.0, "permille": 0.1},
    "rotation": {"rpm": 1.0},
}
INVERSE_UNITS: frozenset[str] = frozenset({"l/100km"})

# Encodings of time columns: Arrow timestamps, integer epochs, or ISO 8601 text.
TIME_UNITS: tuple[str, ...] = ("timestamp", "epoch_s", "epoch_ms", "epoch_us", "epoch_ns", "iso8601")
EPOCH_UNITS: dict[str, str] = {"epoch_s": "s", "epoch_ms": "ms", "epoch_us": "us", "epoch_ns": "ns"}


def allowed_units(kind: str) -> tuple[str, ...]:
    """Return the source units a mapping may declare for a column of quantity ``kind``."""
    if kind in ("time", "time_list"):
        return TIME_UNITS
    return tuple(UNIT_FACTORS.get(kind, {}))


def canonical_unit(kind: str) -> str | None:
    """Return the unit the contract stores a column of quantity ``kind`` in, if it has one."""
    if kind in ("time", "time_list"):
        return "timestamp"
    units = UNIT_FACTORS.get(kind)
    return next(iter(units)) if units else None
