"""Settings of the input contract: per-dataset column mappings and validation thresholds.

Nested in the application settings as ``contract:``. A mapping lets a client whose columns are
named, typed or projected differently be read without code changes, for example::

    contract:
      trajectories:
        rename: {tripId: trip_id}
        units: {timestamps: epoch_ms}
        crs: EPSG:6677
      tachometer:
        units: {speed_kmh: m/s}
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import pyproj
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from compute.contract.schema import COLUMN_SPECS, DATASETS, TEST_CYCLES
from compute.contract.units import allowed_units
from compute.i18n import OperatorValueError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ColumnMapping(_Section):
    """Differences of one client dataset from the canonical schema: names, units, values, CRS."""

    rename: dict[str, str] = Field(
        default_factory=dict,
        description="Source column name to canonical column name, e.g. {tripId: trip_id}.",
    )
    units: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Canonical column to the unit or encoding the source uses, e.g. {speed_kmh: m/s, "
            "ts: epoch_ms}. Values are converted to the unit in the canonical column name."
        ),
    )
    values: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Canonical column to a map of source value to canonical value, e.g. {fuel_type: {軽油: diesel}}.",
    )
    crs: str | None = Field(
        default=None,
        description=(
            "CRS of the geometry (any pyproj input, e.g. EPSG:6677). Used when the file has no "
            "GeoParquet metadata, or instead of the file's CRS when override_file_crs is true."
        ),
    )
    override_file_crs: bool = Field(
        default=False, description="Use `crs` even when the file's GeoParquet metadata names another CRS."
    )
    geometry_encoding: Literal["WKB"] | None = Field(
        default=None,
        description="Declares WKB geometry for files written without GeoParquet metadata. Needs `crs`.",
    )
    naive_time_zone: str = Field(
        default="UTC", description="Time zone of timestamps stored without one (IANA name, e.g. Asia/Tokyo)."
    )
    keep_extra_columns: bool | None = Field(
        default=None,
        description="Keep columns the contract does not name. By default only geo_attributes keeps them.",
    )

    @field_validator("crs")
    @classmethod
    def _crs_is_known(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            pyproj.CRS.from_user_input(value)
        except pyproj.exceptions.CRSError as error:
            raise OperatorValueError("contract.settings.crs_unknown", value=value) from error
        return value

    @model_validator(mode="after")
    def _encoding_needs_crs(self) -> ColumnMapping:
        if self.geometry_encoding is not None and self.crs is None:
            raise OperatorValueError("contract.settings.encoding_without_crs")
        if self.override_file_crs and self.crs is None:
            raise OperatorValueError("contract.settings.override_without_crs")
        return self


class ContractThresholds(_Section):
    """Limits of the row-level rules. A row outside them is rejected with its reason code."""

    max_speed_kmh: float = Field(
        default=200.0, gt=0, description="Highest plausible speed between two vertices or tachometer records."
    )
    min_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="Shortest time used when dividing by a time step, so two fixes with the same timestamp do not give infinite speed.",
    )
    max_fuel_rate_l_per_h: float = Field(
        default=150.0, gt=0, description="Highest plausible fuel rate implied by fuel_ml over the time since the previous record."
    )
    max_engine_rpm: float = Field(default=10000.0, gt=0, description="Highest plausible engine speed.")
    # The column is km/kWh for electric vehicles, and this project's default table assumes
    # 0.9 km/kWh for an electric heavy truck, so a floor of 1.0 would reject real vehicles.
    min_catalog_fuel_economy_km_per_l: float = Field(
        default=0.5,
        gt=0,
        description=(
            "Lowest plausible catalog fuel economy, in km/l (km/kWh for electric and km/m3 for CNG vehicles). "
            "Catalogs of heavy diesel trucks and route buses give about 3 to 5 km/l."
        ),
    )
    max_catalog_fuel_economy_km_per_l: float = Field(default=60.0, gt=0, description="Highest plausible catalog fuel economy.")
    max_speed_limit_kmh: float = Field(default=200.0, gt=0, description="Highest plausible posted speed limit.")
    max_abs_gradient_pct: float = Field(default=40.0, gt=0, description="Highest plausible absolute road gradient.")
    max_load_kg: float = Field(default=60000.0, gt=0, description="Highest plausible load of one trip.")
    # A compute task uses about 1 KiB per vertex, and a trip is never split across tasks.
    max_vertices_per_trip: int = Field(
        default=1_000_000,
        ge=2,
        description=(
            "Maximum vertices of one trip (11.6 days at 1 Hz, 27.8 hours at 10 Hz). A longer trip is rejected as "
            "geometry_too_large before its geometry is decoded, so that one row cannot exhaust a worker's memory."
        ),
    )
    min_time: dt.datetime = Field(
        default=dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
        description="Earliest plausible time of a vertex or tachometer record (a time without zone is UTC).",
    )
    max_time: dt.datetime = Field(
        default=dt.datetime(2100, 1, 1, tzinfo=dt.UTC),
        description="Latest plausible time of a vertex or tachometer record (a time without zone is UTC).",
    )
    # Bounded so that the comparison with the int64 model_year column cannot overflow.
    min_model_year: int = Field(default=1950, ge=1800, le=9999, description="Oldest plausible model year.")
    max_model_year: int = Field(default=2100, ge=1800, le=9999, description="Newest plausible model year.")

    @field_validator("min_time", "max_time")
    @classmethod
    def _naive_time_is_utc(cls, value: dt.datetime) -> dt.datetime:
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value

    @model_validator(mode="after")
    def _time_window_ordered(self) -> ContractThresholds:
        if self.min_time >= self.max_time:
            raise OperatorValueError("contract.settings.time_window_reversed", min_time=self.min_time, max_time=self.max_time)
        return self

    @model_validator(mode="after")
    def _catalog_range_ordered(self) -> ContractThresholds:
        if self.min_catalog_fuel_economy_km_per_l >= self.max_catalog_fuel_economy_km_per_l:
            raise OperatorValueError(
                "contract.settings.catalog_range_reversed",
                lower=self.min_catalog_fuel_economy_km_per_l,
                upper=self.max_catalog_fuel_economy_km_per_l,
            )
        return self

    def time_window_ms(self) -> tuple[int, int]:
        """Return ``(min_time, max_time)`` as epoch milliseconds."""
        return int(self.min_time.timestamp() * 1000), int(self.max_time.timestamp() * 1000)


class ContractSettings(_Section):
    """Column mappings per dataset and the thresholds of the validation rules."""

    trajectories: ColumnMapping = Field(default_factory=ColumnMapping)
    vehicles: ColumnMapping = Field(default_factory=ColumnMapping)
    tachometer: ColumnMapping = Field(default_factory=ColumnMapping)
    geo_attributes: ColumnMapping = Field(default_factory=ColumnMapping)
    thresholds: ContractThresholds = Field(default_factory=ContractThresholds)

    @model_validator(mode="after")
    def _mappings_name_canonical_columns(self) -> ContractSettings:
        for dataset in DATASETS:
            self._check_mapping(dataset, self.mapping(dataset))
        return self

    def mapping(self, dataset: str) -> ColumnMapping:
        """Return the column mapping of ``dataset``."""
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
        mapping: ColumnMapping = getattr(self, dataset)
        return mapping

    @staticmethod
    def _check_mapping(dataset: str, mapping: ColumnMapping) -> None:
        specs = {spec.name: spec for spec in COLUMN_SPECS[dataset]}
        sources_of: dict[str, list[str]] = {}
        for source, target in mapping.rename.items():
            sources_of.setdefault(target, []).append(source)
        for target, sources in sources_of.items():
            if len(sources) > 1:
                raise OperatorValueError("contract.settings.rename_duplicated", dataset=dataset, sources=sorted(sources), target=target)
        for source, target in mapping.rename.items():
            if target not in specs:
                raise OperatorValueError(
                    "contract.settings.rename_unknown_column", dataset=dataset, source=source, target=target, columns=sorted(specs)
                )
        for column, unit in mapping.units.items():
            if column not in specs:
                raise OperatorValueError(
                    "contract.settings.unknown_column", dataset=dataset, part="units", column=column, columns=sorted(specs)
                )
            accepted = allowed_units(specs[column].kind)
            if unit not in accepted:
                raise OperatorValueError("contract.settings.unit_unknown", dataset=dataset, column=column, unit=unit, units=list(accepted))
        for column in mapping.values:
            if column not in specs:
                raise OperatorValueError(
                    "contract.settings.unknown_column", dataset=dataset, part="values", column=column, columns=sorted(specs)
                )
        if dataset == "vehicles":
            bad = [v for v in mapping.values.get("test_cycle", {}).values() if v not in TEST_CYCLES]
            if bad:
                raise OperatorValueError("contract.settings.test_cycle_unknown", values=bad, cycles=list(TEST_CYCLES))
