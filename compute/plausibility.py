"""Plausibility checks of one day's results, reported as warnings with codes (never as rejects).

A reject removes an input row that breaks the contract. A warning keeps the result and tells the
operator that it looks odd: a trip whose CO2 per km lies far outside the range of its vehicle
class, a day whose distance is mostly off the mapped roads, a vehicle whose measured fuel (T1)
drifts away from the modelled fuel (T2), a vehicle whose tachograph distance keeps disagreeing
with its GPS distance, or a day with nothing to compute. The checks are pure
functions on the per-trip output; the output phase runs them and writes the warnings into the
run report and ``summary.json``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from compute import columns as c
from compute.i18n import OperatorValueError, message, register

#: Tank-to-wheel CO2 per km (g/km) that a trip of each vehicle class is expected to fall in.
#: They start from the class default fuel economy in ``compute/data/vehicles/default_fuel_economy.csv``
#: at the fuel CO2 factor: a diesel car at 12 km/L and 2.62 kg/L gives 218 g/km, a city bus at 3.5 km/L
#: gives 749 g/km. The bounds are widened by about +60 % for congested city driving and -50 % for
#: free-flowing roads. Passenger-car classes of SUMO 1.28.0 (PHEMlight, HBEFA4) and FASTSim 3.1.0 give
#: 116 to 243 g/km on WLTC, UDDS and HWFET. These bounds are estimates for warnings, not factors.
DEFAULT_INTENSITY_RANGES_G_PER_KM: dict[str, tuple[float, float]] = {
    "kei_passenger": (70.0, 280.0),
    "passenger": (100.0, 380.0),
    "bus": (450.0, 1800.0),
    "kei_truck": (80.0, 320.0),
    "light_truck": (150.0, 550.0),
    "medium_truck": (250.0, 900.0),
    "heavy_truck": (450.0, 1800.0),
}

#: Japanese names of the vehicle classes of the input contract. Japanese texts show the name with
#: the code in brackets, as in 大型貨物車（heavy_truck）, so that the code can still be searched for.
VEHICLE_CLASS_NAMES_JA: dict[str, str] = {
    "kei_passenger": "軽乗用車", "passenger": "乗用車", "bus": "バス", "kei_truck": "軽貨物車",
    "light_truck": "小型貨物車", "medium_truck": "中型貨物車", "heavy_truck": "大型貨物車",
}

#: Patterns of a listed date in ``DayFacts.outside_day_dates``, such as "2026-11-20 (2)", and of the
#: closing entry "… (+3)" that counts the unlisted dates. ``compute.phases`` writes this form.
_OUTSIDE_DAY_ENTRY = re.compile(r"(?P<date>\d{4}-\d{2}-\d{2}) \((?P<trips>[\d,]+)\)")
_OUTSIDE_DAY_MORE = re.compile(r"… \(\+(?P<dates>\d+)\)")

register(
    {
        "plausibility.range_unordered": {
            "ja": "車両区分 {vehicle_class!r} の CO2 原単位の範囲 ({low}, {high}) は 0 ≤ 下限 < 上限 を満たしていません。"
                  "下限を上限より小さい 0 以上の値にしてください（単位 g/km）。",
            "en": "intensity range of vehicle class {vehicle_class!r} must satisfy 0 <= low < high, got ({low}, {high}); "
                  "give a low bound of 0 or more below the high bound (g/km)",
        },
        "warning.intensity_out_of_range": {
            "ja": "トリップの CO2 原単位 {value} g/km が車両区分 {vehicle_class} の想定範囲 {low}–{high} g/km から大きく外れています。",
            "en": "Trip CO2 intensity {value} g/km is far outside the expected {low}–{high} g/km of vehicle class {vehicle_class}.",
        },
        "warning.trip_too_short": {
            "ja": "走行距離が {min_km} km 未満のトリップが {count} 件あり、その g/km は判定していません（停車中の GPS の揺れなどでアイドリングが支配的なため）。",
            "en": "Trips shorter than {min_km} km: {count}. Their g/km is not judged, because idling (or GPS jitter while standing) dominates it.",
        },
        "warning.match_share_low": {
            "ja": "道路リンクに照合した距離の割合が {value} で、下限 {threshold} を下回っています。道路別の内訳は一部の距離しか表しません。",
            "en": "Only {value} of the distance is matched to a road link, below {threshold}; the road breakdown covers part of the distance only.",
        },
        "warning.geo_no_overlap": {
            "ja": "地理属性（道路・エリア）の範囲 {geo_bbox} が走行位置の範囲 {trip_bbox} と重なりません。この日の地理属性が別の地域のものです。",
            "en": "The geo attributes ({geo_bbox}) do not overlap the driven area ({trip_bbox}); the day's geo attributes cover another region.",
        },
        "warning.t1_t2_drift": {
            "ja": "車両 {vehicle_id} の実測燃料/モデル燃料比（T1/T2）が {value} で、1 から {tolerance} を超えてずれています（{n_trips} トリップ）。",
            "en": "Vehicle {vehicle_id} has a measured/modelled fuel ratio (T1/T2) of {value}, more than {tolerance} away from 1 ({n_trips} trips).",
        },
        "warning.tacho_distance_mismatch": {
            "ja": "車両 {vehicle_id} の {n_trips} トリップのうち {mismatched} 件で、タコグラフ速度から求めた距離が GPS の距離と合わないため、"
                  "T2 を使っていません（quality_flags の tacho_distance_mismatch）。タコグラフの較正、速度の単位、車両 ID の対応を確認してください。",
            "en": "Vehicle {vehicle_id}: in {mismatched} of {n_trips} trips the distance from the tachograph speed disagrees with the GPS "
                  "distance, so T2 was not used (tacho_distance_mismatch in quality_flags). Check the tachograph's calibration, "
                  "its speed unit and the vehicle_id it is recorded under.",
        },
        "warning.no_trips": {
            "ja": "この日は算定できるトリップがありません（trajectories {trajectories} 行、うち受理 {accepted} 行）。タコグラフ記録はトリップの時間帯の中でだけ使われるため、トリップのない日は CO2 が 0 になります。",
            "en": "The day has no trip to estimate (trajectories: {trajectories} rows, {accepted} accepted). Tachometer records are used only within a trip's time span, so a day without trips has no CO2.",
        },
        "warning.trips_outside_day": {
            "ja": "受理したトリップのうち {outside:,} 件は、開始日が実行日 {day}（{timezone}）ではありません（{dates}）。"
                  "別の日のトリップは、その日の実行でも数えられて二重計上になることがあります。納品データの日付を確認してください。",
            "en": "{outside:,} accepted trips start on a date other than the run date {day} ({timezone}): {dates}. "
                  "A trip of another day is counted twice when that day runs too; check the dates of the delivery.",
        },
        "warning.trips_overlap": {
            "ja": "{trips:,} トリップが、同じ車両の前のトリップが終わる前に始まっています（{vehicles:,} 台、重なりが {tolerance_s:g} 秒を超えるもの）。"
                  "1 台の車両は同時に 1 つのトリップしか走れないため、トリップの二重の分割か、複数の車両が同じ vehicle_id を使っていないか確認してください。"
                  "重なった時間帯のタコグラフ記録は一方のトリップにしか使われません。",
            "en": "{trips:,} trips start before an earlier trip of the same vehicle ends ({vehicles:,} vehicles, overlaps above {tolerance_s:g} s). "
                  "A vehicle drives one trip at a time, so check for trips split twice or for vehicles that share a vehicle_id. "
                  "Tachometer records in an overlap are used for one of the trips only.",
        },
        "warning.tacho_outside_trips": {
            "ja": "タコグラフ記録 {outside:,} 行（全 {rows:,} 行）はどのトリップの時間帯にも入らないため、算定に使われていません。",
            "en": "{outside:,} of {rows:,} tachometer records fall outside every trip, so no estimate uses them.",
        },
    }
)


class PlausibilitySettings(BaseModel):
    """Thresholds of the plausibility checks; every default is documented on its field."""

    model_config = ConfigDict(extra="forbid")

    intensity_ranges_g_per_km: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(DEFAULT_INTENSITY_RANGES_G_PER_KM),
        description="Expected tank-to-wheel CO2 per km (g/km, low and high) per vehicle class; classes not listed are not judged.",
    )
    far_outside_factor: float = Field(
        default=1.5,
        ge=1.0,
        le=10.0,
        description="A trip is far outside when its g/km is below low / factor or above high x factor.",
    )
    min_trip_distance_km: float = Field(
        default=0.5,
        ge=0.0,
        le=100.0,
        description="Trips shorter than this are not judged by g/km, because idling dominates their intensity.",
    )
    min_match_share: float = Field(
        default=0.5, ge=0.0, le=1.0, description="A day whose share of distance matched to a road link is lower gets a warning."
    )
    t1_t2_tolerance: float = Field(
        default=0.25,
        gt=0.0,
        le=5.0,
        description="A vehicle whose fuel-weighted T1/T2 ratio differs from 1 by more than this gets a warning.",
    )
    min_t1_t2_trips: int = Field(default=2, ge=1, le=1000, description="Minimum number of trips with a T1/T2 ratio before a vehicle is judged.")
    max_tacho_mismatch_share: float = Field(
        default=0.25,
        ge=0.0,
        le=1.0,
        description=(
            "A vehicle whose share of trips flagged tacho_distance_mismatch exceeds this gets a warning. An honest "
            "tachograph gives no such trip, so repeated mismatches point at the device or its records."
        ),
    )
    min_tacho_mismatch_trips: int = Field(
        default=2, ge=1, le=1000, description="Minimum number of trips flagged tacho_distance_mismatch before a vehicle is judged."
    )
    max_listed_trips: int = Field(
        default=20, ge=0, le=10_000, description="Trip warnings listed one by one in the summary; the count always covers all."
    )

    @model_validator(mode="after")
    def _ranges_ordered(self) -> PlausibilitySettings:
        for vehicle_class, (low, high) in self.intensity_ranges_g_per_km.items():
            if not 0 <= low < high:
                raise OperatorValueError("plausibility.range_unordered", vehicle_class=vehicle_class, low=low, high=high)
        return self


@dataclass(frozen=True)
class PlausibilityWarning:
    """One warning: its code, what it concerns (trip, vehicle or day), the key and the figures."""

    code: str
    scope: str
    key: str
    fields: dict[str, Any]

    def text(self, lang: str = "ja") -> str:
        """Return the warning as one sentence in ``lang``.

        A Japanese sentence names the vehicle class beside its code and lists the dates of other
        days without half-width brackets. ``fields`` keep the codes and dates as they are.
        """
        return message(f"warning.{self.code}", lang, **_localized_fields(self.fields, lang))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DayFacts:
    """Day-level figures that the checks need besides the per-trip output."""

    trajectory_rows: int = 0
    trajectory_accepted: int = 0
    matched_share: float | None = None
    tacho_rows: int = 0
    tacho_outside_trips: int = 0
    #: Trips that start before an earlier trip of their vehicle ends, and their vehicles.
    overlapping_trips: int = 0
    overlapping_vehicles: int = 0
    overlap_tolerance_s: float = 60.0
    #: Accepted trips whose start falls on another date than the run date, on the report's clock.
    trips_outside_day: int = 0
    #: Those dates with their trip counts, most frequent first, e.g. "2026-11-20 (2), 2027-06-01 (1)".
    outside_day_dates: str = ""
    run_day: str = ""
    timezone: str = ""
    trip_bbox: tuple[float, float, float, float] | None = None
    geo_bbox: tuple[float, float, float, float] | None = None


def check_day(
    trips: pd.DataFrame,
    vehicles: pd.DataFrame,
    facts: DayFacts,
    settings: PlausibilitySettings | None = None,
) -> list[PlausibilityWarning]:
    """Run every plausibility check on one day and return the warnings, day-level ones first.

    Parameters
    ----------
    trips
        Per-trip output with trip_id, vehicle_id, distance_km, co2_g_per_km, t1_t2_ratio and
        quality_flags (a missing column skips the check that needs it).
    vehicles
        Vehicle master with vehicle_id and vehicle_class.
    facts
        Day-level counts from the validate and compute phases.
    settings
        Thresholds; the documented defaults when omitted.
    """
    settings = settings or PlausibilitySettings()
    warnings = _check_day_level(trips, facts, settings)
    warnings += _check_intensity(trips, vehicles, settings)
    warnings += _check_t1_t2(trips, settings)
    warnings += _check_tacho_distance(trips, settings)
    return warnings


def count_codes(warnings: list[PlausibilityWarning]) -> dict[str, int]:
    """Count warnings per code, in code order."""
    counts: dict[str, int] = {}
    for warning in warnings:
        counts[warning.code] = counts.get(warning.code, 0) + 1
    return dict(sorted(counts.items()))


def summarise_warnings(warnings: list[PlausibilityWarning], settings: PlausibilitySettings | None = None) -> dict[str, Any]:
    """Return the JSON form for ``summary.json``: counts per code and the listed warnings.

    Every day- and vehicle-level warning is listed; trip warnings are listed up to
    ``max_listed_trips`` and counted in full.
    """
    settings = settings or PlausibilitySettings()
    listed: list[dict[str, Any]] = []
    trips_listed = 0
    for warning in warnings:
        if warning.scope == "trip":
            if trips_listed >= settings.max_listed_trips:
                continue
            trips_listed += 1
        listed.append(warning.as_dict())
    return {"counts": count_codes(warnings), "items": listed}


def intensity_range(vehicle_class: str, settings: PlausibilitySettings | None = None) -> tuple[float, float] | None:
    """Return the expected g/km range of ``vehicle_class``, or None when the class is not judged."""
    settings = settings or PlausibilitySettings()
    return settings.intensity_ranges_g_per_km.get(vehicle_class)


def vehicle_class_label(vehicle_class: str, lang: str) -> str:
    """Return a vehicle class as texts in ``lang`` show it.

    Japanese gives the name with the code in brackets, 大型貨物車（heavy_truck）. English, and a class
    without a Japanese name, give the code alone.
    """
    name = VEHICLE_CLASS_NAMES_JA.get(vehicle_class)
    return f"{name}（{vehicle_class}）" if lang == "ja" and name else vehicle_class


def _localized_fields(fields: dict[str, Any], lang: str) -> dict[str, Any]:
    if lang != "ja":
        return fields
    localized = dict(fields)
    if "vehicle_class" in localized:
        localized["vehicle_class"] = vehicle_class_label(str(localized["vehicle_class"]), lang)
    if "dates" in localized:
        localized["dates"] = _outside_day_dates_ja(str(localized["dates"]))
    return localized


def _outside_day_dates_ja(dates: str) -> str:
    """Rewrite "2026-11-20 (2), … (+3)" as "2026-11-20 に 2 件、ほか 3 日" for a Japanese sentence.

    Text of any other form is returned unchanged.
    """
    parts = []
    for entry in dates.split(", "):
        if listed := _OUTSIDE_DAY_ENTRY.fullmatch(entry):
            parts.append(f"{listed['date']} に {listed['trips']} 件")
        elif more := _OUTSIDE_DAY_MORE.fullmatch(entry):
            parts.append(f"ほか {more['dates']} 日")
        else:
            return dates
    return "、".join(parts)


def _check_day_level(trips: pd.DataFrame, facts: DayFacts, settings: PlausibilitySettings) -> list[PlausibilityWarning]:
    warnings: list[PlausibilityWarning] = []
    if len(trips) == 0:
        warnings.append(
            PlausibilityWarning(
                "no_trips", "day", "", {"trajectories": facts.trajectory_rows, "accepted": facts.trajectory_accepted}
            )
        )
    if facts.tacho_outside_trips > 0:
        warnings.append(
            PlausibilityWarning(
                "tacho_outside_trips", "day", "", {"outside": facts.tacho_outside_trips, "rows": facts.tacho_rows}
            )
        )
    if facts.overlapping_trips > 0:
        warnings.append(
            PlausibilityWarning(
                "trips_overlap", "day", "",
                {"trips": facts.overlapping_trips, "vehicles": facts.overlapping_vehicles, "tolerance_s": facts.overlap_tolerance_s},
            )
        )
    if facts.trips_outside_day > 0:
        warnings.append(
            PlausibilityWarning(
                "trips_outside_day", "day", "",
                {"outside": facts.trips_outside_day, "day": facts.run_day, "timezone": facts.timezone, "dates": facts.outside_day_dates},
            )
        )
    if facts.trip_bbox is not None and facts.geo_bbox is not None and not _bboxes_overlap(facts.trip_bbox, facts.geo_bbox):
        warnings.append(
            PlausibilityWarning(
                "geo_no_overlap", "day", "", {"geo_bbox": _format_bbox(facts.geo_bbox), "trip_bbox": _format_bbox(facts.trip_bbox)}
            )
        )
    if facts.matched_share is not None and len(trips) and facts.matched_share < settings.min_match_share:
        warnings.append(
            PlausibilityWarning(
                "match_share_low",
                "day",
                "",
                {"value": f"{facts.matched_share:.1%}", "threshold": f"{settings.min_match_share:.0%}"},
            )
        )
    return warnings


def _check_intensity(trips: pd.DataFrame, vehicles: pd.DataFrame, settings: PlausibilitySettings) -> list[PlausibilityWarning]:
    if len(trips) == 0 or c.CO2_G_PER_KM not in trips:
        return []
    classes = vehicles.drop_duplicates(c.VEHICLE_ID).set_index(c.VEHICLE_ID)[c.VEHICLE_CLASS]
    vehicle_class = trips[c.VEHICLE_ID].map(classes)
    distance = trips[c.DISTANCE_KM].to_numpy(dtype="float64")
    intensity = trips[c.CO2_G_PER_KM].to_numpy(dtype="float64")

    warnings: list[PlausibilityWarning] = []
    short = np.isfinite(distance) & (distance < settings.min_trip_distance_km)
    if short.any():
        warnings.append(
            PlausibilityWarning("trip_too_short", "day", "", {"count": int(short.sum()), "min_km": settings.min_trip_distance_km})
        )

    # The ranges are tank-to-wheel CO2 of combustion vehicles; electric ones have 0 g/km by definition.
    fuel = trips[c.VEHICLE_ID].map(vehicles.drop_duplicates(c.VEHICLE_ID).set_index(c.VEHICLE_ID)[c.FUEL_TYPE]) if c.FUEL_TYPE in vehicles else None
    electric = (fuel == "electric").to_numpy(dtype=bool) if fuel is not None else np.zeros(len(trips), dtype=bool)

    factor = settings.far_outside_factor
    for position in np.flatnonzero(~short & ~electric & np.isfinite(intensity)):
        bounds = settings.intensity_ranges_g_per_km.get(str(vehicle_class.iloc[position]))
        if bounds is None:
            continue
        low, high = bounds
        value = intensity[position]
        if low / factor <= value <= high * factor:
            continue
        warnings.append(
            PlausibilityWarning(
                "intensity_out_of_range",
                "trip",
                str(trips[c.TRIP_ID].iloc[position]),
                {"value": round(float(value), 1), "vehicle_class": str(vehicle_class.iloc[position]), "low": low, "high": high},
            )
        )
    return warnings


def _check_t1_t2(trips: pd.DataFrame, settings: PlausibilitySettings) -> list[PlausibilityWarning]:
    if len(trips) == 0 or c.T1_T2_RATIO not in trips:
        return []
    with_ratio = trips[trips[c.T1_T2_RATIO].notna() & (trips[c.T1_T2_RATIO] > 0)]
    if with_ratio.empty:
        return []

    # Fuel-weighted ratio per vehicle: sum(T1) / sum(T2), with T2 = T1 / ratio per trip.
    t1 = with_ratio[c.FUEL_L].to_numpy(dtype="float64")
    frame = pd.DataFrame({c.VEHICLE_ID: with_ratio[c.VEHICLE_ID].to_numpy(), "t1": t1, "t2": t1 / with_ratio[c.T1_T2_RATIO].to_numpy(dtype="float64")})
    grouped = frame.groupby(c.VEHICLE_ID, sort=True).agg(n_trips=("t1", "size"), t1=("t1", "sum"), t2=("t2", "sum"))

    warnings: list[PlausibilityWarning] = []
    for vehicle_id, row in grouped.iterrows():
        if row["n_trips"] < settings.min_t1_t2_trips or not row["t2"] > 0:
            continue
        ratio = row["t1"] / row["t2"]
        if abs(ratio - 1.0) > settings.t1_t2_tolerance:
            warnings.append(
                PlausibilityWarning(
                    "t1_t2_drift",
                    "vehicle",
                    str(vehicle_id),
                    {"vehicle_id": str(vehicle_id), "value": round(float(ratio), 3), "tolerance": settings.t1_t2_tolerance,
                     "n_trips": int(row["n_trips"])},
                )
            )
    return warnings


def _check_tacho_distance(trips: pd.DataFrame, settings: PlausibilitySettings) -> list[PlausibilityWarning]:
    if len(trips) == 0 or c.QUALITY_FLAGS not in trips:
        return []
    # The code is matched between ';' separators, so that a longer code containing it never counts.
    flags = trips[c.QUALITY_FLAGS].fillna("").astype("str")
    mismatched = flags.str.contains(r"(?:^|;)tacho_distance_mismatch(?:;|$)", regex=True).to_numpy(dtype=bool)
    if not mismatched.any():
        return []

    frame = pd.DataFrame({c.VEHICLE_ID: trips[c.VEHICLE_ID].to_numpy(), "mismatched": mismatched})
    grouped = frame.groupby(c.VEHICLE_ID, sort=True)["mismatched"].agg(n_trips="size", count="sum")
    judged = grouped[
        (grouped["count"] >= settings.min_tacho_mismatch_trips)
        & (grouped["count"] / grouped["n_trips"] > settings.max_tacho_mismatch_share)
    ]
    return [
        PlausibilityWarning(
            "tacho_distance_mismatch",
            "vehicle",
            str(vehicle_id),
            {"vehicle_id": str(vehicle_id), "mismatched": int(row["count"]), "n_trips": int(row["n_trips"])},
        )
        for vehicle_id, row in judged.iterrows()
    ]


def _bboxes_overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _format_bbox(bbox: tuple[float, float, float, float]) -> str:
    return f"lon {bbox[0]:.3f}..{bbox[2]:.3f}, lat {bbox[1]:.3f}..{bbox[3]:.3f}"


__all__ = [
    "DEFAULT_INTENSITY_RANGES_G_PER_KM",
    "VEHICLE_CLASS_NAMES_JA",
    "DayFacts",
    "PlausibilitySettings",
    "PlausibilityWarning",
    "check_day",
    "count_codes",
    "intensity_range",
    "summarise_warnings",
    "vehicle_class_label",
]
