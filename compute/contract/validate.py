"""Row-level validation: split one partition into accepted rows and reject rows.

Every input row ends up exactly once in ``accepted`` or in ``rejects``. The rules of a dataset
run in the order of :data:`~compute.contract.reasons.RULE_ORDER`, and the first rule a row fails
gives its reason code and a :class:`~compute.contract.details.Detail` (where and by how much).
The rules are vectorised (numpy, shapely 2, pyproj); Python loops only build the details of
rejected rows.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import shapely

from compute import columns as c
from compute.contract.details import Detail
from compute.contract.frames import VERTICES_OVER_LIMIT, WKB_UNREADABLE, decode_geometry, row_keys, tachometer_key_parts
from compute.contract.reasons import FlagCode, ReasonCode
from compute.contract.repeats import RepeatedKeys, repeated_keys_in_frame
from compute.contract.rules_geometry import check_geometry
from compute.contract.rules_time import check_speeds, check_times
from compute.contract.schema import (
    AREA_TYPES,
    FUEL_TYPES,
    GEOMETRY_DATASETS,
    KEY_COLUMNS,
    TEST_CYCLES,
    VEHICLE_CLASSES,
    check_dataset,
)
from compute.contract.settings import ContractSettings, ContractThresholds
from compute.contract.state import MAX_VALUE_CHARS, RuleState, format_value

# Column added to accepted rows: comma-separated flag codes, null when the row has none.
CONTRACT_FLAGS = c.CONTRACT_FLAGS


@dataclass
class ValidationContext:
    """Inputs of the rules of one partition beyond the partition itself.

    Attributes
    ----------
    known_vehicle_ids : numpy.ndarray, set or None
        ``vehicle_id`` of the accepted vehicles master; ``None`` skips the master check.
    rejected_vehicle_reasons : dict
        Reason code of each rejected row of the vehicles master, by ``vehicle_id``, as
        :func:`rejected_vehicle_reasons` returns it. A trip or tachometer record of such a
        vehicle is still rejected as ``vehicle_not_in_master``. Its detail names the reason of
        the rejected master row, so the operator corrects that row instead of adding the vehicle.
    repeated_keys : dict
        Per dataset, the keys that occur more than once in the whole day, split into conflicting
        keys and exact repeats with the copy to keep (see
        :class:`~compute.contract.repeats.RepeatedKeys`). Found across partitions by
        ``compute.pipeline.repeated_keys`` or :func:`~compute.contract.repeats.repeated_keys_in`.
    duplicated_keys : dict
        Per dataset, keys whose every row is rejected as ``key_duplicated`` without comparing
        the content of the copies, as :func:`~compute.contract.frames.find_duplicate_keys`
        returns them. These keys are rejected even where :attr:`repeated_keys` has a copy to keep.
    settings : ContractSettings
        Thresholds of the rules.

    Notes
    -----
    When a dataset is in neither :attr:`repeated_keys` nor :attr:`duplicated_keys`, the
    partition is taken as the whole day. Keys are compared only within it, and of identical
    copies the first is kept.
    """

    known_vehicle_ids: np.ndarray | Collection[str] | None = None
    rejected_vehicle_reasons: Mapping[str, str] = field(default_factory=dict)
    repeated_keys: dict[str, RepeatedKeys] = field(default_factory=dict)
    duplicated_keys: dict[str, np.ndarray | Collection[str]] = field(default_factory=dict)
    settings: ContractSettings = field(default_factory=ContractSettings)


def rejected_vehicle_reasons(vehicle_rejects: pd.DataFrame) -> dict[str, str]:
    """Return the reason code of each rejected vehicles row, by ``vehicle_id``.

    Parameters
    ----------
    vehicle_rejects : pandas.DataFrame
        Rejects of the vehicles dataset, as :func:`validate_rows` returns them.

    Returns
    -------
    dict
        ``vehicle_id`` to reason code for :attr:`ValidationContext.rejected_vehicle_reasons`.
        Rows without a key are left out. A repeated ``vehicle_id`` keeps the reason of its
        first reject row. Rows rejected as ``row_repeated`` are left out, because the vehicle's
        reason is that of its kept copy.
    """
    rows = vehicle_rejects[(vehicle_rejects[c.DATASET] == "vehicles") & (vehicle_rejects[c.REASON] != ReasonCode.ROW_REPEATED.value)]
    rows = rows.dropna(subset=[c.ROW_KEY])
    reasons = rows.drop_duplicates(c.ROW_KEY)
    return dict(zip(reasons[c.ROW_KEY].astype(str), reasons[c.REASON].astype(str), strict=True))


def validate_rows(
    dataset: str, frame: pd.DataFrame, context: ValidationContext, *, piece: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split one conformed partition into accepted rows and reject rows.

    Parameters
    ----------
    dataset : str
        One of :data:`~compute.contract.schema.DATASETS`.
    frame : pandas.DataFrame
        The conformed table as pandas (see :func:`~compute.contract.frames.to_frame`), with
        geometry as shapely objects in EPSG:4326 for trajectories and geo_attributes. WKB bytes
        in ``geometry`` are decoded first.
    context : ValidationContext
        Vehicle master ids, rejected master rows, keys repeated in the day and thresholds.
    piece : int, optional
        Position of this partition in the day, as :attr:`ValidationContext.repeated_keys`
        numbers the partitions. Rows are identified by their position in ``frame``, so
        ``frame`` must hold the partition's rows as read, in order.

    Returns
    -------
    accepted : pandas.DataFrame
        The rows that passed, in input order, with repaired geometry where a polygon was
        repaired and a ``contract_flags`` column.
    rejects : pandas.DataFrame
        One row per rejected row with the columns ``REJECT_COLUMNS`` (``detail`` in English),
        then ``DETAIL_COLUMNS``: the kind and parameters that render ``detail`` in any language
        (see :func:`~compute.contract.details.render_details`).
    """
    check_dataset(dataset)
    if dataset in GEOMETRY_DATASETS:
        frame = decode_geometry(frame)
    state = RuleState(len(frame))
    keys = row_keys(dataset, frame)
    thresholds = context.settings.thresholds

    _check_keys(dataset, frame, keys, context, piece, state)
    if dataset == "trajectories":
        frame = _check_trajectories(frame, context, thresholds, state)
    elif dataset == "vehicles":
        _check_vehicles(frame, thresholds, state)
    elif dataset == "tachometer":
        _check_tachometer(frame, context, thresholds, state)
    else:
        frame = _check_geo_attributes(frame, thresholds, state)

    accepted = frame.iloc[np.flatnonzero(state.open)].drop(columns=[WKB_UNREADABLE, VERTICES_OVER_LIMIT], errors="ignore")
    accepted[CONTRACT_FLAGS] = pd.Series(state.flag_text()[state.open], index=accepted.index, dtype="str")
    return accepted, state.rejects(dataset, keys)


def _check_keys(
    dataset: str, frame: pd.DataFrame, keys: pd.Series, context: ValidationContext, piece: int, state: RuleState
) -> None:
    missing = keys.isna().to_numpy(dtype=bool, copy=True)
    for column in KEY_COLUMNS[dataset]:
        values = frame[column]
        if values.dtype == object or pd.api.types.is_string_dtype(values):
            missing |= values.astype("string").str.strip().eq("").fillna(True).to_numpy(dtype=bool)
    listed_keys = context.duplicated_keys.get(dataset)
    repeated = _repeated_keys(dataset, frame, keys, context, piece)

    def row_details(hit: np.ndarray) -> list[Detail]:
        # The file and its row where the piece's files are known: a piece may join several files.
        if repeated.sources is not None and piece in repeated.sources:
            return [Detail("row_of_file", dict(zip(("file", "row"), repeated.file_row(piece, int(i)), strict=True))) for i in hit]
        return [Detail("row_of_partition", {"row": int(i)}) for i in hit]

    state.reject(ReasonCode.KEY_MISSING, missing, value=lambda hit: [_describe_row(frame, i) for i in hit], detail=row_details)

    # Key text as Python objects only where a key must be looked up: building it for every
    # tachometer record cost about 0.8 us each.
    kept_piece, kept_row = repeated.kept_positions(keys.to_numpy(dtype=object, na_value=None) if not repeated.kept.empty else keys)
    identical = kept_piece >= 0

    # A key repeated within the partition that the day's keys do not list as identical copies
    # is rejected as a whole, so that the partition accepts at most one row per key.
    local = _duplicated(dataset, frame, keys)
    conflicting = local & ~identical
    if len(repeated.conflicting):
        conflicting |= keys.isin(repeated.conflicting).to_numpy(dtype=bool)
    if listed_keys is not None and len(listed_keys):
        conflicting |= keys.isin(list(listed_keys)).to_numpy(dtype=bool)
    state.reject(
        ReasonCode.KEY_DUPLICATED, conflicting, value=lambda hit: keys.iloc[hit].to_numpy(dtype=object, na_value=None), detail=Detail("key_repeated")
    )

    is_kept = identical & (kept_piece == piece) & (kept_row == np.arange(len(frame)))
    state.reject(
        ReasonCode.ROW_REPEATED,
        identical & ~is_kept,
        value=lambda hit: keys.iloc[hit].to_numpy(dtype=object, na_value=None),
        detail=lambda hit: repeated.kept_copy_details(kept_piece[hit], kept_row[hit]),
    )


def _duplicated(dataset: str, frame: pd.DataFrame, keys: pd.Series) -> np.ndarray:
    """Return which rows have a key that occurs more than once in ``frame``; rows without a key may be marked too.

    A tachometer key is the vehicle and the time, so its copies are found on integer codes of
    both instead of on the key text (about 0.6 s less per million records). Rows with a
    missing key are rejected before this matters.
    """
    if dataset != "tachometer" or len(frame) == 0:
        return keys.duplicated(keep=False).to_numpy(dtype=bool)
    vehicle_code, _, ts_ms, _ = tachometer_key_parts(frame)
    order = np.lexsort((ts_ms, vehicle_code))
    same = (vehicle_code[order][1:] == vehicle_code[order][:-1]) & (ts_ms[order][1:] == ts_ms[order][:-1])
    repeated = np.zeros(len(frame), dtype=bool)
    repeated[order[1:][same]] = True
    repeated[order[:-1][same]] = True
    return repeated


def _repeated_keys(dataset: str, frame: pd.DataFrame, keys: pd.Series, context: ValidationContext, piece: int) -> RepeatedKeys:
    repeated = context.repeated_keys.get(dataset)
    if repeated is not None:
        return repeated
    if dataset in context.duplicated_keys:
        return RepeatedKeys()
    return repeated_keys_in_frame(frame, keys, piece)


def _describe_row(frame: pd.DataFrame, position: int) -> str:
    fields = []
    for name in frame.columns[:4]:
        if name == c.GEOMETRY:
            continue
        # Half the reject value at most per column, so a long list (timestamps) leaves room for the others.
        fields.append(f"{name}={format_value(frame[name].iloc[position], MAX_VALUE_CHARS // 2)}")
    return ", ".join(fields)


def _blank(values: pd.Series) -> np.ndarray:
    return values.astype("string").str.strip().eq("").fillna(True).to_numpy(dtype=bool)


def _vehicle_unknown(frame: pd.DataFrame, context: ValidationContext) -> np.ndarray:
    if context.known_vehicle_ids is None:
        return np.zeros(len(frame), dtype=bool)
    known = np.asarray(list(context.known_vehicle_ids), dtype=object)
    return ~frame[c.VEHICLE_ID].isin(known).to_numpy(dtype=bool)


def _vehicle_unknown_details(frame: pd.DataFrame, context: ValidationContext) -> Callable[[np.ndarray], list[Detail]]:
    """Return the detail builder of ``vehicle_not_in_master``: the reason of the vehicle's
    rejected master row where there is one, else the count of accepted vehicles."""
    accepted_vehicles = 0 if context.known_vehicle_ids is None else len(context.known_vehicle_ids)
    missing = Detail("vehicle_unknown", {"accepted_vehicles": accepted_vehicles})
    # One Detail per master reason, so the rejects render each distinct detail once.
    rejected_row = {
        reason: Detail("vehicle_row_rejected", {"master_reason": reason}) for reason in set(context.rejected_vehicle_reasons.values())
    }

    def build(hit: np.ndarray) -> list[Detail]:
        vehicle_ids = frame[c.VEHICLE_ID].iloc[hit].astype("string")
        reasons = vehicle_ids.map(context.rejected_vehicle_reasons).to_numpy(dtype=object, na_value=None)
        return [missing if reason is None else rejected_row[reason] for reason in reasons]

    return build


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _check_trajectories(
    frame: pd.DataFrame, context: ValidationContext, thresholds: ContractThresholds, state: RuleState
) -> pd.DataFrame:
    vehicle_ids = frame[c.VEHICLE_ID]
    state.reject(ReasonCode.VALUE_MISSING, _blank(vehicle_ids), detail=Detail("value_null", {"column": c.VEHICLE_ID}))
    state.reject(
        ReasonCode.VEHICLE_NOT_IN_MASTER,
        _vehicle_unknown(frame, context),
        value=vehicle_ids.to_numpy(dtype=object, na_value=None),
        detail=_vehicle_unknown_details(frame, context),
    )

    geometries = np.asarray(frame[c.GEOMETRY], dtype=object)
    _check_vertex_count(frame, geometries, thresholds, state)
    geometries = check_geometry("trajectories", frame, geometries, state)
    times, has_times = check_times(frame, geometries, thresholds, state)
    check_speeds(frame, geometries, times, has_times, thresholds, state)

    load_kg = _numbers(frame, c.LOAD_KG)
    state.reject(ReasonCode.VALUE_NEGATIVE, load_kg < 0, value=load_kg, detail=_negative(c.LOAD_KG))
    state.reject(
        ReasonCode.VALUE_OUT_OF_RANGE,
        load_kg > thresholds.max_load_kg,
        value=load_kg,
        detail=Detail("above_max", {"column": c.LOAD_KG, "setting": "max_load_kg", "limit": thresholds.max_load_kg}),
    )
    return frame


def _check_vertex_count(frame: pd.DataFrame, geometries: np.ndarray, thresholds: ContractThresholds, state: RuleState) -> None:
    """Reject trips above ``max_vertices_per_trip``: counted before decoding (:func:`~compute.contract.frames.to_frame`), else here."""
    limit = thresholds.max_vertices_per_trip
    vertices = np.maximum(np.nan_to_num(_numbers(frame, VERTICES_OVER_LIMIT)).astype(np.int64), shapely.get_num_coordinates(geometries))
    state.reject(
        ReasonCode.GEOMETRY_TOO_LARGE,
        vertices > limit,
        value=vertices,
        detail=lambda hit: [Detail("vertices_above_max", {"vertices": int(vertices[i]), "limit": limit}) for i in hit],
    )


def _check_vehicles(frame: pd.DataFrame, thresholds: ContractThresholds, state: RuleState) -> None:
    vehicle_class = frame[c.VEHICLE_CLASS]
    fuel_type = frame[c.FUEL_TYPE]
    state.reject(
        ReasonCode.VEHICLE_CLASS_UNKNOWN,
        ~vehicle_class.isin(VEHICLE_CLASSES).to_numpy(dtype=bool),
        value=vehicle_class.to_numpy(dtype=object, na_value=None),
        detail=_allowed(VEHICLE_CLASSES),
    )
    state.reject(
        ReasonCode.FUEL_TYPE_UNKNOWN,
        ~fuel_type.isin(FUEL_TYPES).to_numpy(dtype=bool),
        value=fuel_type.to_numpy(dtype=object, na_value=None),
        detail=_allowed(FUEL_TYPES),
    )
    if c.TEST_CYCLE in frame:
        cycle = frame[c.TEST_CYCLE]
        state.reject(
            ReasonCode.TEST_CYCLE_UNKNOWN,
            (cycle.notna() & ~cycle.isin(TEST_CYCLES)).to_numpy(dtype=bool),
            value=cycle.to_numpy(dtype=object, na_value=None),
            detail=_allowed(TEST_CYCLES),
        )

    economy = _numbers(frame, c.CATALOG_FE)
    payload = _numbers(frame, c.MAX_PAYLOAD_KG)
    model_year = _numbers(frame, c.MODEL_YEAR)
    state.reject(ReasonCode.VALUE_NEGATIVE, economy < 0, value=economy, detail=_negative(c.CATALOG_FE))
    state.reject(ReasonCode.VALUE_NEGATIVE, payload < 0, value=payload, detail=_negative(c.MAX_PAYLOAD_KG))
    lowest_economy = thresholds.min_catalog_fuel_economy_km_per_l
    highest_economy = thresholds.max_catalog_fuel_economy_km_per_l
    state.reject(
        ReasonCode.VALUE_OUT_OF_RANGE,
        (economy < lowest_economy) | (economy > highest_economy),
        value=economy,
        detail=Detail("outside_range", {"column": c.CATALOG_FE, "lower": lowest_economy, "upper": highest_economy}),
    )
    state.reject(
        ReasonCode.VALUE_OUT_OF_RANGE,
        (model_year < thresholds.min_model_year) | (model_year > thresholds.max_model_year),
        value=model_year,
        detail=Detail("outside_range", {"column": c.MODEL_YEAR, "lower": thresholds.min_model_year, "upper": thresholds.max_model_year}),
    )


def _check_tachometer(frame: pd.DataFrame, context: ValidationContext, thresholds: ContractThresholds, state: RuleState) -> None:
    state.reject(
        ReasonCode.VEHICLE_NOT_IN_MASTER,
        _vehicle_unknown(frame, context),
        value=frame[c.VEHICLE_ID].to_numpy(dtype=object, na_value=None),
        detail=_vehicle_unknown_details(frame, context),
    )
    speed = _numbers(frame, c.SPEED_KMH)
    rpm = _numbers(frame, c.ENGINE_RPM)
    fuel_ml = _numbers(frame, c.FUEL_ML)
    _check_record_times(frame, thresholds, state)
    state.reject(ReasonCode.VALUE_MISSING, np.isnan(speed), detail=Detail("value_null", {"column": c.SPEED_KMH}))
    state.reject(ReasonCode.VALUE_NEGATIVE, speed < 0, value=speed, detail=_negative(c.SPEED_KMH))
    state.reject(ReasonCode.VALUE_NEGATIVE, rpm < 0, value=rpm, detail=_negative(c.ENGINE_RPM))
    state.reject(
        ReasonCode.SPEED_IMPLAUSIBLE,
        speed > thresholds.max_speed_kmh,
        value=speed,
        detail=Detail("speed_above_limit", {"limit_kmh": thresholds.max_speed_kmh}),
    )
    state.reject(
        ReasonCode.VALUE_OUT_OF_RANGE,
        rpm > thresholds.max_engine_rpm,
        value=rpm,
        detail=Detail("above_max", {"column": c.ENGINE_RPM, "setting": "max_engine_rpm", "limit": thresholds.max_engine_rpm}),
    )
    state.reject(ReasonCode.FUEL_NEGATIVE, fuel_ml < 0, value=fuel_ml, detail=_negative(c.FUEL_ML))

    rate_l_per_h, interval_s = _fuel_rates(frame, fuel_ml, thresholds)
    state.reject(
        ReasonCode.FUEL_IMPLAUSIBLE,
        rate_l_per_h > thresholds.max_fuel_rate_l_per_h,
        value=fuel_ml,
        detail=lambda hit: [
            Detail(
                "fuel_rate",
                {
                    "rate_l_per_h": float(rate_l_per_h[i]),
                    "interval_s": float(interval_s[i]),
                    "limit_l_per_h": thresholds.max_fuel_rate_l_per_h,
                },
            )
            for i in hit
        ],
    )


def _check_record_times(frame: pd.DataFrame, thresholds: ContractThresholds, state: RuleState) -> None:
    earliest_ms, latest_ms = thresholds.time_window_ms()
    ts = pd.to_datetime(frame[c.TS], utc=True).to_numpy(dtype="datetime64[ms]")
    ts_ms = ts.astype(np.int64)
    outside = ~np.isnat(ts) & ((ts_ms < earliest_ms) | (ts_ms > latest_ms))
    window = Detail("outside_window", {"min_time": thresholds.min_time.isoformat(), "max_time": thresholds.max_time.isoformat()})
    state.reject(ReasonCode.TIMESTAMP_OUT_OF_RANGE, outside, value=lambda hit: [str(ts[i]) + "Z" for i in hit], detail=window)


def _fuel_rates(frame: pd.DataFrame, fuel_ml: np.ndarray, thresholds: ContractThresholds) -> tuple[np.ndarray, np.ndarray]:
    """Return per record the fuel rate since the previous record of the same vehicle, and that interval.

    The first record of a vehicle in the partition has no previous record and gets NaN.
    """
    n_rows = len(frame)
    rate = np.full(n_rows, np.nan)
    interval = np.full(n_rows, np.nan)
    if n_rows == 0 or np.isnan(fuel_ml).all():
        return rate, interval
    # NOTE: only records within one partition are compared. The first record of each vehicle in
    # a partition is not checked, so tachometer should be partitioned by vehicle.
    ts_ms = pd.to_datetime(frame[c.TS], utc=True).to_numpy(dtype="datetime64[ms]").astype(np.int64)
    # Vehicles as integer codes: sorting Python strings took most of this rule's time. The
    # order of the vehicles does not matter, only that each one's records are together.
    vehicle_code, _ = pd.factorize(frame[c.VEHICLE_ID].astype("string").fillna(""))
    order = np.lexsort((ts_ms, vehicle_code))
    sorted_vehicle = vehicle_code[order]
    sorted_ts = ts_ms[order]
    previous_same = np.r_[False, sorted_vehicle[1:] == sorted_vehicle[:-1]]
    step_s = np.r_[np.nan, np.diff(sorted_ts) / 1000.0]
    step_s = np.where(previous_same, np.maximum(step_s, thresholds.min_interval_s), np.nan)
    interval[order] = step_s
    rate = (fuel_ml / 1000.0) / (interval / 3600.0)
    return rate, interval


def _check_geo_attributes(frame: pd.DataFrame, thresholds: ContractThresholds, state: RuleState) -> pd.DataFrame:
    state.reject(ReasonCode.VALUE_MISSING, _blank(frame[c.SOURCE]), detail=Detail("value_null", {"column": c.SOURCE}))

    geometries = np.asarray(frame[c.GEOMETRY], dtype=object)
    repaired = check_geometry("geo_attributes", frame, geometries, state)
    if repaired is not geometries:
        frame = frame.copy()
        frame[c.GEOMETRY] = repaired

    speed_limit = _numbers(frame, c.SPEED_LIMIT_KMH)
    gradient = _numbers(frame, c.GRADIENT_PCT)
    state.reject(
        ReasonCode.VALUE_OUT_OF_RANGE,
        (speed_limit <= 0) | (speed_limit > thresholds.max_speed_limit_kmh),
        value=speed_limit,
        detail=Detail("outside_lower_exclusive", {"column": c.SPEED_LIMIT_KMH, "lower": 0, "upper": thresholds.max_speed_limit_kmh}),
    )
    state.reject(
        ReasonCode.VALUE_OUT_OF_RANGE,
        np.abs(gradient) > thresholds.max_abs_gradient_pct,
        value=gradient,
        detail=Detail(
            "abs_above_max", {"column": c.GRADIENT_PCT, "setting": "max_abs_gradient_pct", "limit": thresholds.max_abs_gradient_pct}
        ),
    )

    if c.AREA_TYPE in frame:
        area_type = frame[c.AREA_TYPE]
        state.flag(FlagCode.AREA_TYPE_UNKNOWN, (area_type.notna() & ~area_type.isin(AREA_TYPES)).to_numpy(dtype=bool))
    return frame


def _negative(column: str) -> Detail:
    return Detail("value_negative", {"column": column})


def _allowed(values: tuple[str, ...]) -> Detail:
    return Detail("values_allowed", {"values": ", ".join(values)})
