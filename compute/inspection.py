"""``lm-co2 validate PATH``: the contract checks of the daily flow, on any day folder, in-process.

The same functions as in the validate phase run here: conform, then the row rules with the day's
repeated keys and vehicle master. They run one file at a time and without a Dask cluster, so a
client or an operator can check a delivery before it is scheduled.

The report shows the first reject of each dataset and reason as an example. Its detail is
rendered in the report's language from the rule's detail kind and parameters
(:func:`compute.contract.render_details`); the rejects file keeps the English detail.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from compute import columns as c
from compute import contract, pipeline
from compute.i18n import OperatorError, register
from compute.settings import Settings
from compute.storage import Store, open_url

register(
    {
        "validate.path_missing": {
            "ja": "{path} が見つかりません。1 日分のフォルダ（…/input/YYYYMMDD/）のパスまたは URL を指定してください。",
            "en": "{path} not found; pass the path or URL of a day folder (…/input/YYYYMMDD/).",
        },
        "validate.not_day_folder": {
            "ja": "{path} は 1 日分のフォルダではありません（想定: {datasets_ja} を含む …/input/YYYYMMDD/）。"
                  "データセットのフォルダを直接含む 1 日分のフォルダ（例: …/input/20261201）を指定してください。",
            "en": "{path} is not a day folder (expected …/input/YYYYMMDD/ with {datasets}). "
                  "Give the folder that holds the day's dataset folders, for example …/input/20261201.",
        },
    }
)


def validate_path(url: str, settings: Settings, *, lang: str = "ja", rejects_path: str | None = None) -> tuple[str, bool]:
    """Validate the day folder at ``url`` and return ``(Markdown report, balance holds)``.

    A dataset-level error does not raise here: it is part of the report, and the result is
    reported as not balanced so the command exits non-zero.

    Raises
    ------
    OperatorError
        If ``url`` does not exist, or if none of the contract's dataset folders is below it.
    """
    store = Store(url, {})
    _check_day_folder(store, url)
    summary = contract.ValidationSummary()
    rejects: list[pd.DataFrame] = []
    try:
        tables = _read_day(store, settings, summary)
        known: np.ndarray | None = None
        rejected_vehicles: dict[str, str] = {}
        for dataset in ("vehicles", "geo_attributes", "trajectories", "tachometer"):
            if dataset not in tables:
                continue
            files = list(tables[dataset])
            # Each file is one piece, so the first of identical copies is the one the daily run keeps.
            repeated = contract.repeated_keys_in(dataset, list(tables[dataset].values()), files)
            context = contract.ValidationContext(
                settings=settings.contract, known_vehicle_ids=known, rejected_vehicle_reasons=rejected_vehicles, repeated_keys={dataset: repeated}
            )
            accepted_parts = []
            for piece, name in enumerate(files):
                frame = contract.to_frame(dataset, tables[dataset][name], max_vertices=settings.contract.thresholds.max_vertices_per_trip)
                accepted, rejected = contract.validate_rows(dataset, frame, context, piece=piece)
                summary.record(dataset, len(frame), accepted, rejected)
                accepted_parts.append(accepted)
                rejects.append(rejected)
            if dataset == "vehicles":
                known = pd.concat(accepted_parts)[c.VEHICLE_ID].to_numpy(dtype=object) if accepted_parts else np.array([], dtype=object)
                rejected_vehicles = contract.rejected_vehicle_reasons(pd.concat(rejects)) if rejects else {}
    except contract.ContractError as error:
        summary.add_error(error)

    all_rejects = pd.concat(rejects, ignore_index=True) if rejects else contract.empty_rejects()
    if rejects_path:
        with open_url(rejects_path, "wb") as handle:
            pq.write_table(pipeline.rejects_table(all_rejects), handle)
    balanced = summary.ok
    try:
        contract.check_balance(summary)
    except contract.BalanceError:
        balanced = False
    examples = contract.render_details(all_rejects.drop_duplicates([c.DATASET, c.REASON]), lang)
    return contract.render_report(summary, lang, examples), balanced


def _check_day_folder(store: Store, url: str) -> None:
    """Raise :class:`OperatorError` unless ``store`` exists and contains at least one dataset folder."""
    if not store.exists():
        raise OperatorError("validate.path_missing", path=url)
    if not any(store.exists(dataset) for dataset in contract.DATASETS):
        folders = [f"{dataset}/" for dataset in contract.DATASETS]
        raise OperatorError("validate.not_day_folder", path=url, datasets=", ".join(folders), datasets_ja="、".join(folders))


def _read_day(store: Store, settings: Settings, summary: contract.ValidationSummary) -> dict[str, dict[str, pa.Table]]:
    """Return per dataset the conformed table of each file, by file name in file order."""
    tables: dict[str, dict[str, pa.Table]] = {}
    listed = {dataset: pipeline.list_dataset_files(store, dataset) for dataset in contract.DATASETS}
    missing = [dataset for dataset, files in listed.items() if not files and dataset in contract.REQUIRED_DATASETS]
    if missing:
        raise contract.dataset_missing(missing, [store.child_url(dataset) for dataset in missing])
    for dataset, files in listed.items():
        if not files:
            summary.mark_absent(dataset)
            continue
        tables[dataset] = {}
        for name in files:
            try:
                with store.open(name) as handle:
                    table = pq.ParquetFile(handle).read()
            except (pa.ArrowInvalid, OSError) as error:
                raise contract.file_unreadable(dataset, name, error) from error
            tables[dataset][name] = contract.conform_table(dataset, table, settings.contract)
    return tables

