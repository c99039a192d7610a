"""Quality flag codes of the per-trip output and the vectorised joiner.

``quality_flags`` is a ';'-joined string of the codes below, in the order of this table.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

QUALITY_FLAGS: dict[str, str] = {
    "vehicle_not_found": "The trip's vehicle_id is not in the vehicle master or its class or fuel is unknown; no estimate.",
    "no_segments": "The trip has no segments; distance comes from the tachograph speed or is 0.",
    "zero_distance": "The trip covered no distance; per-km intensities are empty.",
    "interpolated_times": "Vertex times were interpolated; the trip has no speed profile, so T3 was not used.",
    "sparse_vertices": "Timed vertices are too sparse (median segment duration above the limit) for T3.",
    "tacho_fuel_incomplete": "Tachograph fuel_ml exists but does not cover the trip; T1 was not used.",
    "tacho_speed_incomplete": "Tachograph speed exists but does not cover the trip at 1 Hz; T2 was not used.",
    "tacho_distance_mismatch": (
        "The distance from the tachograph speed disagrees with the GPS distance (ratio outside the band and difference "
        "above the limit); T2 was not used, T1 is kept."
    ),
    "tacho_rows_rejected": (
        "Tachograph records inside the trip were rejected in validation (copies of one second that differ, implausible "
        "values); T1 counts them as records without fuel_ml."
    ),
    "no_catalog_fe": "The vehicle has no catalog fuel economy; T4 was not possible.",
    "no_test_cycle": "The vehicle has a catalog value but no test cycle; T4 needs the cycle for its gap.",
    "calibrated_on_class_default": "T2/T3 were calibrated to the class default fuel economy, not a catalog value.",
    "calibration_clamped": "The catalog value was below what the idle rate alone implies; k was floored.",
    "gps_accel_corrected": "T3 positive inertia work was scaled up for the acceleration lost between vertices.",
    "gps_jump_replaced": "Some T3 segments changed speed faster than a vehicle can (GPS jump or missing fix); they use the distance-model fuel.",
    "gps_standstill": (
        "GPS fixes of a standstill (within the standstill radius for at least its duration, going back and forth) were held "
        "still: those segments count as idle with 0 m, so the scatter of the fixes adds neither distance nor acceleration."
    ),
    "no_grade": "Some segments had neither a link gradient nor a Z grade; 0 % was used there.",
    "grade_clipped": "Some segment grades exceeded the limit and were clipped.",
    "load_unknown": "Truck load_kg unknown; the class default load factor was used.",
    "payload_default": "Truck max_payload_kg unknown; the class default payload was used.",
    "tonkm_coefficients_2006": "The improved ton-km formula used the 2006 coefficients (revised in 2022).",
    "cold_start_applied": "A cold-start excess was added to the first minutes of the trip.",
    "electric_ttw_zero": "Electric vehicle: tank-to-wheel CO2 is 0 and grid emissions are in co2e_wtw_kg.",
    "unconfirmed_co2_factor": "The fuel CO2 factor of the selected regime is unconfirmed.",
    "unconfirmed_ch4_n2o": "The CH4/N2O per-km row is a substitute for a missing class.",
    "unconfirmed_gwp": "The GWP values were not checked against the IPCC report.",
    "unconfirmed_wtt": "The well-to-tank factor is an estimate.",
    "unconfirmed_grid": "The grid electricity factor is unconfirmed.",
    "unconfirmed_gap": "The real-world gap factor of the test cycle is unconfirmed or an estimate.",
    "unconfirmed_idle_rate": "The idle rate of the class and fuel is an estimate, not an ECCJ value.",
    "unconfirmed_road_load": "The road-load parameters of the class are estimates.",
    "unconfirmed_default_fe": "The default fuel economy of the class and fuel is an estimate.",
    "unconfirmed_cycle_substitute": "Calibration used a substitute for the JC08 or heavy-vehicle mode trace.",
}


# join_flags packs one bit per code into an int64.
if len(QUALITY_FLAGS) > 62:
    raise RuntimeError(f"{len(QUALITY_FLAGS)} quality flag codes do not fit the 62 bits join_flags packs them into; widen its key")


def join_flags(masks: Mapping[str, np.ndarray], n_rows: int) -> np.ndarray:
    """Join the codes whose mask is true into one ';'-separated string per row.

    Raises
    ------
    KeyError
        If a code is not documented in ``QUALITY_FLAGS``.
    """
    undocumented = set(masks) - set(QUALITY_FLAGS)
    if undocumented:
        raise KeyError(f"quality flag codes {sorted(undocumented)} are not documented in QUALITY_FLAGS")
    # Each row's flags become one integer, with bit j for the j-th code in QUALITY_FLAGS order.
    # The text is then built once per distinct combination, not once per row.
    codes = [code for code in QUALITY_FLAGS if code in masks]
    key = np.zeros(n_rows, dtype=np.int64)
    for bit, code in enumerate(codes):
        key |= np.broadcast_to(np.asarray(masks[code], dtype=bool), (n_rows,)).astype(np.int64) << bit
    combinations, row_combination = np.unique(key, return_inverse=True)
    texts = np.array([";".join(code for bit, code in enumerate(codes) if int(combination) >> bit & 1) for combination in combinations],
                     dtype=object)
    return texts[row_combination] if n_rows else np.zeros(0, dtype=object)
