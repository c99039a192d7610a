"""Column names used across lm-co2, in one place.

Every module refers to columns through these constants so that a rename is one edit. Units are
part of the names (``_m``, ``_s``, ``_kmh``, ``_kg``, ``_l``) and are never implied.

Invariants
----------
* ``TRIP_ID`` is the key of every per-trip output row and of every trajectory reject.
* Times are UTC ``datetime64[ms, UTC]`` in every frame that leaves a module.
"""

from __future__ import annotations

# Keys shared by several datasets.
TRIP_ID = "trip_id"
VEHICLE_ID = "vehicle_id"
FEATURE_ID = "feature_id"
GEOMETRY = "geometry"

# trajectories/ (input contract)
TIMESTAMPS = "timestamps"
START_TIME = "start_time"
END_TIME = "end_time"
LOAD_KG = "load_kg"

# vehicles/ (input contract)
VEHICLE_CLASS = "vehicle_class"
FUEL_TYPE = "fuel_type"
CATALOG_FE = "catalog_fuel_economy_km_per_l"
TEST_CYCLE = "test_cycle"
MAX_PAYLOAD_KG = "max_payload_kg"
MODEL_YEAR = "model_year"

# tachometer/ (input contract)
TS = "ts"
SPEED_KMH = "speed_kmh"
ENGINE_RPM = "engine_rpm"
FUEL_ML = "fuel_ml"

# geo_attributes/ (input contract)
SOURCE = "source"
ROAD_CLASS = "road_class"
SPEED_LIMIT_KMH = "speed_limit_kmh"
GRADIENT_PCT = "gradient_pct"
AREA_TYPE = "area_type"
ELEVATION_M = "elevation_m"

# Segments: one row per pair of consecutive vertices of a trip.
SEG_INDEX = "seg_index"
T_START = "t_start"
DURATION_S = "duration_s"
LENGTH_M = "length_m"
ACCEL_M_S2 = "accel_m_s2"
GRADE_PCT = "grade_pct"
LON_MID = "lon_mid"
LAT_MID = "lat_mid"
# Displacement of a segment in metres, east and north, in the tangent plane at its midpoint.
EAST_M = "east_m"
NORTH_M = "north_m"
# True for a segment inside a GPS standstill: its length was set to 0 (segments.StandstillRule).
STANDSTILL = "standstill"
AREA_ID = "area_id"
LINK_ID = "link_id"
LINK_DISTANCE_M = "link_distance_m"
LINK_GRADIENT_PCT = "link_gradient_pct"
MATCHED = "matched"

# Trip information derived while segmenting.
N_VERTICES = "n_vertices"
TIME_SOURCE = "time_source"  # "vertex" when per-vertex timestamps exist, else "interpolated"

# Per-trip outputs.
DISTANCE_KM = "distance_km"
IDLE_S = "idle_s"
AVG_SPEED_KMH = "avg_speed_kmh"
FUEL_L = "fuel_l"
ENERGY_KWH = "energy_kwh"
CO2_TTW_KG = "co2_ttw_kg"
CO2E_TTW_KG = "co2e_ttw_kg"
CO2E_WTW_KG = "co2e_wtw_kg"
CO2_G_PER_KM = "co2_g_per_km"
CO2_G_PER_TKM = "co2_g_per_tkm"
METHOD = "method"
UNCERTAINTY_PCT = "uncertainty_pct"
QUALITY_FLAGS = "quality_flags"
T1_T2_RATIO = "t1_t2_ratio"
MATCHED_SHARE = "matched_share"

# Rejects: one row per rejected input row.
DATASET = "dataset"
ROW_KEY = "row_key"
REASON = "reason"
VALUE = "value"
DETAIL = "detail"
#: Aligned tachograph rows (``temp/tacho_aligned``): True marks the place of a rejected record.
TACHO_REJECTED = "rejected"

# ---------------------------------------------------------------------------------------------
# Emission model additions (compute.emissions, compute.metrics).
# ---------------------------------------------------------------------------------------------
FUEL_M3 = "fuel_m3"  # gaseous fuel (CNG) volume at the regime's reference conditions
FACTOR_VERSION = "factor_version"
METHODOLOGY_VERSION = "methodology_version"
DIMENSION = "dimension"
CATEGORY = "category"

# Input contract (compute.contract): flags on accepted rows.
CONTRACT_FLAGS = "contract_flags"  # comma-separated flag codes, null when the row has none
