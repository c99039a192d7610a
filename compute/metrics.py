"""Per-trip metrics, breakdowns by segment attribute, and the T1/T2 summary.

A metric is one function registered with ``@trip_metric("column")``: it receives the per-trip
frame built by the emission model (plus the trip load) and returns one value per row.
``compute_trip_metrics`` runs them in registration order, so a metric may read an earlier one.
A breakdown dimension is one function registered with ``@breakdown_dimension("name")`` that
returns one category per segment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numba
import numpy as np
import pandas as pd

from compute import columns as c

TripMetric = Callable[[pd.DataFrame, np.ndarray], np.ndarray]
Dimension = Callable[[pd.DataFrame], pd.Series]

TRIP_METRICS: dict[str, TripMetric] = {}
BREAKDOWN_DIMENSIONS: dict[str, Dimension] = {}
UNMATCHED = "unmatched"
DEFAULT_DIMENSIONS = (c.ROAD_CLASS, c.AREA_TYPE)
#: Below this many (trip, category) keys the breakdown counts into a dense table instead of sorting.
_DENSE_KEYS_MIN = 1 << 16

BREAKDOWN_DTYPES = {
    c.TRIP_ID: "str",
    c.DIMENSION: "str",
    c.CATEGORY: "str",
    c.DISTANCE_KM: "float64",
    c.CO2_TTW_KG: "float64",
}
T1_T2_SUMMARY_DTYPES = {
    c.VEHICLE_CLASS: "str",
    "n_trips": "int64",
    "ratio_median": "float64",
    "ratio_mean": "float64",
    "ratio_p10": "float64",
    "ratio_p90": "float64",
    "ratio_fuel_weighted": "float64",
}


def trip_metric(column: str) -> Callable[[TripMetric], TripMetric]:
    """Register ``function`` as the metric that fills ``column`` of the per-trip output.

    Raises
    ------
    ValueError
        If a metric for ``column`` is already registered.
    """

    def register(function: TripMetric) -> TripMetric:
        if column in TRIP_METRICS:
            raise ValueError(f"trip metric {column!r} is already registered by {TRIP_METRICS[column].__name__}")
        TRIP_METRICS[column] = function
        return function

    return register


def breakdown_dimension(name: str) -> Callable[[Dimension], Dimension]:
    """Register ``function`` as the category source of breakdown dimension ``name``."""

    def register(function: Dimension) -> Dimension:
        if name in BREAKDOWN_DIMENSIONS:
            raise ValueError(f"breakdown dimension {name!r} is already registered")
        BREAKDOWN_DIMENSIONS[name] = function
        return function

    return register


def compute_trip_metrics(trips: pd.DataFrame, load_kg: np.ndarray) -> pd.DataFrame:
    """Return ``trips`` with every registered metric column added or replaced.

    Parameters
    ----------
    trips
        Per-trip frame with at least distance_km, duration_s and co2_ttw_kg.
    load_kg
        Load per trip (kg, NaN unknown), aligned with ``trips``.
    """
    out = trips.copy()
    for column, function in TRIP_METRICS.items():
        out[column] = function(out, load_kg)
    return out


@trip_metric(c.AVG_SPEED_KMH)
def average_speed_kmh(trips: pd.DataFrame, load_kg: np.ndarray) -> np.ndarray:
    """Distance over trip duration (km/h); empty for trips of zero duration."""
    distance = trips[c.DISTANCE_KM].to_numpy(dtype="float64")
    duration = trips[c.DURATION_S].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(duration > 0, distance / (duration / 3600.0), np.nan)


@trip_metric(c.CO2_G_PER_KM)
def co2_g_per_km(trips: pd.DataFrame, load_kg: np.ndarray) -> np.ndarray:
    """Tank-to-wheel CO2 per km (g/km); empty for trips without distance."""
    distance = trips[c.DISTANCE_KM].to_numpy(dtype="float64")
    co2 = trips[c.CO2_TTW_KG].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(distance > 0, co2 * 1000.0 / distance, np.nan)


@trip_metric(c.CO2_G_PER_TKM)
def co2_g_per_tkm(trips: pd.DataFrame, load_kg: np.ndarray) -> np.ndarray:
    """Tank-to-wheel CO2 per tonne-km (g/t-km); empty without a positive load and distance."""
    distance = trips[c.DISTANCE_KM].to_numpy(dtype="float64")
    co2 = trips[c.CO2_TTW_KG].to_numpy(dtype="float64")
    tonne_km = distance * np.asarray(load_kg, dtype="float64") / 1000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tonne_km > 0, co2 * 1000.0 / tonne_km, np.nan)


@breakdown_dimension(c.ROAD_CLASS)
def road_class_category(segments: pd.DataFrame) -> pd.Series:
    """Road class of the matched link."""
    return segments[c.ROAD_CLASS]


@breakdown_dimension(c.AREA_TYPE)
def area_type_category(segments: pd.DataFrame) -> pd.Series:
    """Area type of the segment's area."""
    return segments[c.AREA_TYPE]


@breakdown_dimension("hour_utc")
def hour_utc_category(segments: pd.DataFrame) -> pd.Series:
    """UTC hour (00-23) of the segment start."""
    hours = pd.to_datetime(segments[c.T_START], utc=True).dt.hour
    # A missing start makes the hours float (22.0), so each one is made an int before formatting.
    return hours.map(lambda hour: f"{int(hour):02d}", na_action="ignore")


def breakdown(segments: pd.DataFrame, dimensions: Iterable[str] = DEFAULT_DIMENSIONS) -> pd.DataFrame:
    """Sum distance and CO2 per trip and category of each dimension.

    Parameters
    ----------
    segments
        ``EstimateResult.segments``: segments with length_m and co2_ttw_kg.
    dimensions
        Registered dimension names; road_class and area_type by default.

    Returns
    -------
    pandas.DataFrame
        Long format: trip_id, dimension, category, distance_km, co2_ttw_kg. A missing
        category is reported as ``"unmatched"``.

    Raises
    ------
    ValueError
        If a dimension is not registered.
    """
    unknown = [name for name in dimensions if name not in BREAKDOWN_DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown breakdown dimensions {unknown}; registered: {sorted(BREAKDOWN_DIMENSIONS)}")

    trip_codes, trip_labels = _sorted_codes(segments[c.TRIP_ID])
    # Missing values add nothing, as groupby().sum() skips them.
    distance_km = np.nan_to_num(segments[c.LENGTH_M].to_numpy(dtype="float64") / 1000.0, nan=0.0)
    co2_kg = np.nan_to_num(segments[c.CO2_TTW_KG].to_numpy(dtype="float64"), nan=0.0)
    parts = [_sum_by_trip_and_category(name, BREAKDOWN_DIMENSIONS[name](segments), trip_codes, trip_labels, distance_km, co2_kg)
             for name in dimensions]
    if not parts:
        return _empty_frame(BREAKDOWN_DTYPES)
    result = pd.concat(parts, ignore_index=True)
    return result[list(BREAKDOWN_DTYPES)].astype(BREAKDOWN_DTYPES)


def _sum_by_trip_and_category(
    name: str, category: pd.Series, trip_codes: np.ndarray, trip_labels: np.ndarray, distance_km: np.ndarray, co2_kg: np.ndarray
) -> pd.DataFrame:
    """Sum distance and CO2 per observed (trip, category) pair, sorted by trip id then category.

    Groups are integer codes; the sums add in row order, as ``np.bincount`` does. ``distance_km``
    and ``co2_kg`` come with missing values as 0, and a missing category is reported as
    ``"unmatched"``.
    """
    category_codes, category_labels = _ranked_codes(*_codes_with_unmatched(category))
    n_categories = max(len(category_labels), 1)
    n_keys = len(trip_labels) * n_categories
    if n_keys <= 4 * len(trip_codes) + _DENSE_KEYS_MIN:
        # Few trips and categories for the rows: count into every possible key, no sort.
        counts, distance_all, co2_all = _dense_sums(trip_codes, category_codes, n_categories, n_keys, distance_km, co2_kg)
        groups = np.flatnonzero(counts)
        distance_sum = distance_all[groups]
        co2_sum = co2_all[groups]
    else:
        key = trip_codes * n_categories + category_codes
        groups, group_of_row = np.unique(key, return_inverse=True)
        distance_sum = np.bincount(group_of_row, weights=distance_km, minlength=groups.size)
        co2_sum = np.bincount(group_of_row, weights=co2_kg, minlength=groups.size)
    return pd.DataFrame(
        {
            c.TRIP_ID: trip_labels[groups // n_categories],
            c.DIMENSION: name,
            c.CATEGORY: category_labels[groups % n_categories],
            c.DISTANCE_KM: distance_sum,
            c.CO2_TTW_KG: co2_sum,
        }
    )


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _dense_sums(
    trip_codes: np.ndarray, category_codes: np.ndarray, n_categories: int, n_keys: int, distance_km: np.ndarray, co2_kg: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count rows and sum distance and CO2 per key ``trip * n_categories + category``, adding in
    row order (the three ``np.bincount`` passes of the same keys, in one)."""
    counts = np.zeros(n_keys, dtype=np.int64)
    distance = np.zeros(n_keys)
    co2 = np.zeros(n_keys)
    for i in range(trip_codes.shape[0]):
        key = trip_codes[i] * n_categories + category_codes[i]
        counts[key] += 1
        distance[key] += distance_km[i]
        co2[key] += co2_kg[i]
    return counts, distance, co2


def _codes_with_unmatched(category: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Return per row a code into the returned values, with a missing category as ``"unmatched"``.

    A categorical column keeps its codes: ``"unmatched"`` is added to the categories when absent
    and the missing codes point to it, which is what ``fillna("unmatched")`` gives.
    """
    if isinstance(category.dtype, pd.CategoricalDtype):
        codes, uniques = _factorised(category)
        where = np.flatnonzero(uniques == UNMATCHED) if uniques.size else np.zeros(0, np.int64)
        if where.size == 0:
            uniques = np.append(uniques, np.array([UNMATCHED], dtype=object))
            where = np.array([uniques.size - 1])
        return np.where(codes < 0, where[0], codes), uniques
    return _factorised(category.astype(object).where(category.notna(), UNMATCHED))


def _factorised(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Return per row a code into the returned values (-1 for missing), categoricals per category."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return np.asarray(values.array.codes, dtype=np.int64), values.cat.categories.to_numpy(dtype=object)
    row_codes, uniques_index = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    return row_codes.astype(np.int64), np.asarray(uniques_index, dtype=object)


def _sorted_codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Return integer codes that sort like ``values`` and the value of each code.

    A missing value gets the last code, as ``groupby(sort=True, dropna=False)`` places it.
    A categorical column is factorised once per category, not once per row.

    NOTE: values are ordered by their ``str`` form. That is the groupby order for the string trip
    ids and categories of the contract, but not for numeric values (``"10" < "9"``).
    """
    return _ranked_codes(*_factorised(values))


def _ranked_codes(row_codes: np.ndarray, uniques: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_sorted_codes` of a column given as codes into ``uniques`` (-1 for missing)."""
    order = np.argsort(uniques.astype(str), kind="stable") if uniques.size else np.zeros(0, np.int64)
    rank = np.empty(uniques.size, dtype=np.int64)
    rank[order] = np.arange(uniques.size)
    labels = np.empty(uniques.size + 1, dtype=object)
    labels[:-1] = uniques[order]
    codes = np.where(row_codes >= 0, rank[np.maximum(row_codes, 0)] if uniques.size else 0, uniques.size)
    return codes, labels


def trips_without_litres(fuel_l: pd.Series, fuel_type: pd.Series | None) -> dict[str, int]:
    """Count the trips without a fuel figure in litres, by fuel type.

    CNG trips (fuel in m³) and electric trips (energy in kWh) have none. A trip whose fuel type
    is unknown, or that comes without ``fuel_type``, counts as ``"unmatched"``.
    """
    missing = fuel_l.isna().to_numpy()
    if not missing.any():
        return {}
    if fuel_type is None:
        kinds = pd.Series(UNMATCHED, index=range(int(missing.sum())))
    else:
        kinds = fuel_type[missing].fillna(UNMATCHED).astype(str)
    return {str(kind): int(count) for kind, count in kinds.value_counts().sort_index().items()}


def add_matched_share(trips: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """Return ``trips`` with ``matched_share``: the share of each trip's length on a matched link.

    Lengths are summed per trip in segment order with ``np.bincount``; missing lengths count as
    zero, as ``groupby().sum()`` skips them. A trip without segments or without length gets an
    empty share.
    """
    trip_ids = segments[c.TRIP_ID]
    if isinstance(trip_ids.dtype, pd.CategoricalDtype):
        codes = trip_ids.cat.codes.to_numpy().astype(np.int64)
        categories = pd.Index(trip_ids.cat.categories)
    else:
        codes, categories = pd.factorize(trip_ids.to_numpy(dtype=object), use_na_sentinel=True)
        categories = pd.Index(categories)
    keep = codes >= 0
    length = np.nan_to_num(segments[c.LENGTH_M].to_numpy(dtype=np.float64), nan=0.0)
    matched = segments[c.MATCHED].to_numpy(dtype=bool)
    total = np.bincount(codes[keep], weights=length[keep], minlength=len(categories))
    on_link = np.bincount(codes[keep], weights=np.where(matched, length, 0.0)[keep], minlength=len(categories))
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, on_link / total, np.nan)
    position = categories.get_indexer(trips[c.TRIP_ID].to_numpy(dtype=object))
    values = np.where(position >= 0, share[np.maximum(position, 0)], np.nan) if len(categories) else np.full(len(trips), np.nan)
    return trips.assign(**{c.MATCHED_SHARE: values})


def summarise_t1_t2(trips_out: pd.DataFrame, vehicles: pd.DataFrame) -> pd.DataFrame:
    """Aggregate the T1/T2 fuel ratio by vehicle class for the run summary.

    Parameters
    ----------
    trips_out
        Per-trip output with t1_t2_ratio and fuel_l (the T1 fuel of those trips).
    vehicles
        Vehicle master with vehicle_id and vehicle_class.

    Returns
    -------
    pandas.DataFrame
        One row per vehicle class with at least one ratio: n_trips, the median, mean, 10th and
        90th percentile of the ratio, and the fuel-weighted ratio sum(T1) / sum(T2).
    """
    with_ratio = trips_out[trips_out[c.T1_T2_RATIO].notna()]
    classes = vehicles.drop_duplicates(c.VEHICLE_ID).set_index(c.VEHICLE_ID)[c.VEHICLE_CLASS]
    frame = pd.DataFrame(
        {
            c.VEHICLE_CLASS: with_ratio[c.VEHICLE_ID].map(classes).fillna(UNMATCHED).to_numpy(),
            "ratio": with_ratio[c.T1_T2_RATIO].to_numpy(dtype="float64"),
            "t1": with_ratio[c.FUEL_L].to_numpy(dtype="float64"),
        }
    )
    if frame.empty:
        return _empty_frame(T1_T2_SUMMARY_DTYPES)
    frame["t2"] = frame["t1"] / frame["ratio"]
    grouped = frame.groupby(c.VEHICLE_CLASS, sort=True)
    summary = pd.DataFrame(
        {
            "n_trips": grouped["ratio"].size(),
            "ratio_median": grouped["ratio"].median(),
            "ratio_mean": grouped["ratio"].mean(),
            "ratio_p10": grouped["ratio"].quantile(0.1),
            "ratio_p90": grouped["ratio"].quantile(0.9),
            "ratio_fuel_weighted": grouped["t1"].sum() / grouped["t2"].sum(),
        }
    ).reset_index()
    return summary[list(T1_T2_SUMMARY_DTYPES)].astype(T1_T2_SUMMARY_DTYPES)


def _empty_frame(dtypes: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in dtypes.items()})
