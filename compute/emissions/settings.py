"""Settings of the emission model.

The values of the factor tables live in ``compute/data/``. The fields here select a table
(regime, GWP set, grid factor), switch tiers and corrections on or off, and override the
assumptions of the calibration. An override left at ``None`` keeps the value of the data file.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FactorRegime = Literal["legacy_2010", "legacy_logistics", "rev_2024"]
GwpSet = Literal["AR4", "AR5", "AR6"]
Jc08Substitute = Literal["wltc_low_medium", "udds"]


class EmissionSettings(BaseModel):
    """Configurable assumptions of the tiered fuel and CO2 model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Factor tables.
    factor_regime: FactorRegime = Field(
        default="legacy_2010",
        description=(
            "Fuel CO2 factor table: legacy_2010 (算定省令 2010 revision, diesel 2.62 kg/L), "
            "legacy_logistics (diesel 2.58 kg/L at 37.7 GJ/kL), rev_2024 (FY2024 revision; "
            "only city gas is confirmed, the rest is flagged unconfirmed)."
        ),
    )
    factor_table_version: str | None = Field(
        default=None,
        description="Expected factor table version; None accepts the shipped one, any other value must match it.",
    )
    gwp_set: GwpSet = Field(default="AR5", description="GWP-100 set used for CH4 and N2O in CO2e.")
    grid_factor: str = Field(
        default="jp_national_average",
        min_length=1,
        description="Row of compute/data/factors/grid.csv used for electricity (kg-CO2e/kWh).",
    )

    # Tier switches (T5 default_table is always available).
    enable_fuel_measured: bool = Field(default=True, description="Allow tier T1 (tachograph fuel_ml).")
    enable_tacho_profile: bool = Field(default=True, description="Allow tier T2 (1 Hz tachograph speed).")
    enable_gps_profile: bool = Field(default=True, description="Allow tier T3 (speed from vertex timestamps).")
    enable_catalog_fe: bool = Field(default=True, description="Allow tier T4 (distance / catalog fuel economy).")

    # Validation of tier inputs.
    min_tacho_coverage: float = Field(
        default=0.95, ge=0.5, le=1.0, description="Share of the trip duration that tachograph rows must cover for T1 or T2."
    )
    max_tacho_gap_s: float = Field(
        default=10.0, gt=0, le=600, description="Largest gap between tachograph rows (s) accepted for T1 or T2."
    )
    max_tacho_median_interval_s: float = Field(
        default=2.0, gt=0, le=10, description="Median tachograph sampling interval (s) accepted as a 1 Hz speed profile for T2."
    )
    min_tacho_gps_distance_ratio: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description=(
            "Lowest ratio of a trip's tachograph distance to its GPS distance accepted for T2; 0 turns this bound off. "
            "Honest trips of the sample days stay above 0.96."
        ),
    )
    max_tacho_gps_distance_ratio: float = Field(
        default=2.0,
        ge=1,
        le=1000,
        description=(
            "Highest ratio of a trip's tachograph distance to its GPS distance accepted for T2. Sparse fixes cut corners, "
            "so honest ratios lie above 1: up to 1.46 on sample days with fixes 76 s apart."
        ),
    )
    min_tacho_gps_distance_difference_m: float = Field(
        default=1000.0,
        ge=0,
        le=100_000,
        description=(
            "Smallest difference (m) between a trip's tachograph and GPS distance that counts as a mismatch. A short trip "
            "that loops between two sparse fixes has a large ratio: Porto taxi trips with fixes 45 to 60 s apart exceeded "
            "2 only where the lengths differed by less than 900 m."
        ),
    )
    max_gps_median_interval_s: float = Field(
        default=60.0, gt=0, le=600, description="Median segment duration (s) above which the trajectory is too sparse for T3."
    )
    min_gps_segments: int = Field(default=2, ge=1, le=1000, description="Fewest timed segments a trip needs for T3.")

    # Kinematics and corrections.
    idle_speed_kmh: float = Field(default=2.0, ge=0, le=10, description="Below this speed a segment or row counts as idle.")
    gps_accel_correction: bool = Field(
        default=True,
        description="Scale the positive inertia work of T3 by the cycle-derived loss factor of its vertex interval.",
    )
    max_abs_grade_pct: float = Field(
        default=15.0, gt=0, le=40, description="Grades beyond this magnitude (%) are clipped and flagged."
    )
    max_gps_accel_m_s2: float = Field(
        default=4.0,
        gt=0,
        le=20,
        description=(
            "Largest speed change per second between consecutive T3 segments (m/s2); the 1 Hz US06 trace peaks at 3.76. "
            "A larger change is a GPS jump or a missing fix, and the segment takes the distance-model fuel."
        ),
    )
    max_gps_speed_change_kmh: float = Field(
        default=90.0,
        gt=0,
        le=300,
        description=(
            "Largest change of mean speed between consecutive T3 segments (km/h), whatever their duration; US06 sampled "
            "every 5 to 30 s changes by at most 61 km/h. A larger change takes the distance-model fuel."
        ),
    )
    standstill_radius_m: float = Field(
        default=20.0,
        ge=0,
        le=200,
        description=(
            "GPS fixes that stay within this distance (m) of a fix for at least standstill_min_duration_s, on a path longer "
            "than twice this distance that turns by more than 60 degrees a step on average, are a standstill. Their segments "
            "get length 0 and count as idle. 0 turns the rule off."
        ),
    )
    standstill_min_duration_s: float = Field(
        default=30.0, ge=0, le=3600, description="Shortest standstill (s); 0 turns the rule off."
    )
    cold_start: bool = Field(default=False, description="Add a cold-start excess to the first minutes of every trip.")
    cold_start_duration_s: float = Field(
        default=180.0, gt=0, le=1800, description="Length of the cold phase after the trip start (s)."
    )
    cold_start_excess_pct: float = Field(
        default=15.0, ge=0, le=200, description="Extra fuel during the cold phase (% of the hot fuel); an estimate to calibrate."
    )
    min_load_factor: float = Field(
        default=0.1, gt=0, le=1, description="Load factor floor for the ton-km load exponent (the formula is undefined at 0)."
    )
    catalog_reference_load_factor: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Load factor at which a truck's catalog value is taken to hold for the T4 load correction.",
    )

    # Real-world gap overrides (None keeps compute/data/factors/gap_factors.csv).
    gap_wltc: float | None = Field(default=None, ge=1.0, le=2.0, description="Real/catalog fuel per km, WLTC, conventional.")
    gap_wltc_hybrid: float | None = Field(default=None, ge=1.0, le=2.0, description="Real/catalog fuel per km, WLTC, hybrid.")
    gap_jc08: float | None = Field(default=None, ge=1.0, le=2.0, description="Real/catalog fuel per km, JC08, conventional.")
    gap_jc08_hybrid: float | None = Field(default=None, ge=1.0, le=2.0, description="Real/catalog fuel per km, JC08, hybrid.")
    gap_jh25: float | None = Field(default=None, ge=1.0, le=2.0, description="Real/catalog fuel per km, heavy-vehicle mode.")
    gap_explained_by_profile: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Part of the gap (in fuel-per-km points) that a speed profile already explains; removed for T2/T3.",
    )

    # Certification-cycle substitutes.
    jc08_substitute: Jc08Substitute = Field(
        default="wltc_low_medium",
        description="Trace used in place of JC08 for calibration (no JC08 trace is shipped).",
    )
    jc08_cold_weight: float = Field(default=0.25, ge=0, le=1, description="Weight of the cold-start test in the JC08 value.")
    jc08_cold_excess_pct: float = Field(
        default=10.0, ge=0, le=100, description="Extra fuel of the cold JC08 test over the hot one (%); an estimate."
    )
    jh25_urban_distance_share: float = Field(
        default=0.3, ge=0, le=1, description="Distance share of the urban part in the heavy-vehicle mode substitute."
    )
    jh25_interurban_speed_kmh: float = Field(
        default=80.0, gt=0, le=120, description="Constant speed of the interurban part of the heavy-vehicle mode substitute."
    )
    jh25_test_load_factor: float = Field(
        default=0.5, ge=0, le=1, description="Payload share assumed in the heavy-vehicle mode test."
    )
