"""One typed settings model for lm-co2: profile file first, then environment overrides.

A profile is a YAML file (``compute/profiles/<name>.yaml`` or any path) that names the five storage
roots as URL templates with the run date, the cluster, the output format and the message language.
Environment variables prefixed ``LMCO2_`` override any field, with ``__`` between nested names
(``LMCO2_CLUSTER__N_WORKERS=4``). Nothing here reads the environment at import time: call
:func:`load_settings` when a run starts, and pass the returned object down.

Examples
--------
>>> settings = load_settings("local", environ={})
>>> settings.storage.url("raw", "2026-12-01", data_dir="/data")
'/data/lake/raw/20261201/'
"""

from __future__ import annotations

import datetime as dt
import os
import posixpath
import re
import string
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from dask.utils import parse_bytes
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from compute.contract import ContractSettings
from compute.emissions import EmissionSettings
from compute.i18n import OperatorValueError, register
from compute.plausibility import PlausibilitySettings

ROOTS: tuple[str, ...] = ("input", "raw", "temp", "processed", "output")
ENV_PREFIX = "LMCO2_"
SHIPPED_EXAMPLE = "compute/profiles/local.yaml"
#: Placeholders of a storage root template.
TEMPLATE_FIELDS: tuple[str, ...] = ("data_dir", "yyyymmdd")
#: Codecs that ``pyarrow.parquet.write_table`` 26 lists as valid (it ignores their case).
PARQUET_CODECS: tuple[str, ...] = ("none", "snappy", "gzip", "brotli", "lz4", "lz4_raw", "zstd")
#: First year of a run date: folder names are YYYYMMDD with a four-digit year.
MIN_RUN_YEAR = 1000
# fsspec protocol names that open the same store: gcsfs registers gs and gcs, s3fs s3 and s3a.
_SAME_STORE = {"gcs": "gs", "s3a": "s3", "file": "", "local": ""}

register(
    {
        # Texts of this module's own validators.
        "settings.root_without_date": {
            "ja": "ストレージのルート {value!r} に '{{yyyymmdd}}' がありません。日ごとに別のフォルダになるよう、"
                  "URL テンプレートに {{yyyymmdd}} を入れてください（例: '{{data_dir}}/client/input/{{yyyymmdd}}/'）。",
            "en": "storage root {value!r} has no '{{yyyymmdd}}' placeholder; add it so each day has its own folder, "
                  "for example '{{data_dir}}/client/input/{{yyyymmdd}}/'",
        },
        "settings.adaptive_bounds": {
            "ja": "cluster.min_workers={min_workers} が cluster.max_workers={max_workers} より大きくなっています。"
                  "min_workers を max_workers 以下にしてください。",
            "en": "cluster.min_workers={min_workers} is above cluster.max_workers={max_workers}; "
                  "set min_workers at or below max_workers",
        },
        "settings.unknown_timezone": {
            "ja": "report_timezone の値 {value!r} は IANA のタイムゾーン名ではありません。Asia/Tokyo のような IANA のタイムゾーン名を指定してください。",
            "en": "report_timezone must be an IANA time zone such as Asia/Tokyo, got {value!r}",
        },
        "settings.env_conflict": {
            "ja": "環境変数 {first} と {second} が同じ設定を重ねて指定しています。{first} はその設定に値を 1 つ与え、"
                  "{second} はその中の項目を設定しています。どちらか一方だけにしてください。",
            "en": "environment variables {first} and {second} both set the same setting: {first} gives it one value and "
                  "{second} sets a setting inside it; keep only one of them",
        },
        "settings.profile_not_utf8": {
            "ja": "プロファイル {profile!r} は UTF-8 のテキストではありません（{position} バイト目）。UTF-8 で保存し直してください。",
            "en": "profile {profile!r} is not UTF-8 text (byte {position}); save it again as UTF-8",
        },
        "settings.bad_placeholder": {
            "ja": "ストレージのルート {value!r} のテンプレートが不正です: {problem_ja}。使えるプレースホルダーは "
                  "{{data_dir}}, {{yyyymmdd}} だけです。波かっこそのものは {{{{ と }}}} で書いてください。",
            "en": "storage root {value!r} is not a valid template: {problem}; the only placeholders are "
                  "{{data_dir}}, {{yyyymmdd}}, and a literal brace is written {{{{ or }}}}",
        },
        "settings.roots_overlap": {
            "ja": "ストレージのルート storage.{first}（{first_url}）と storage.{second}（{second_url}）が{relation_ja}。"
                  "input, raw, temp, processed, output は互いに別のフォルダにし、どれも他のフォルダの中に置かないでください。",
            "en": "storage roots storage.{first} ({first_url}) and storage.{second} ({second_url}) {relation}; "
                  "give input, raw, temp, processed and output five separate folders, none inside another",
        },
        "settings.bad_memory_limit": {
            "ja": "cluster.memory_limit の値 {value!r} は正のバイト数ではありません。"
                  "4GiB や 512MB のような Dask のサイズか、auto を指定してください。",
            "en": "cluster.memory_limit must be a positive size that Dask reads, such as 4GiB or 512MB, or auto; got {value!r}",
        },
        "settings.bad_compression": {
            "ja": "output.compression の値 {value!r} は output.format={format!r} で使える圧縮方式ではありません。"
                  "次のいずれかを指定してください: {choices}（null は圧縮なし）。{ignored_ja}",
            "en": "output.compression {value!r} is not a codec for output.format {format!r}; give one of {choices}, "
                  "or null for no compression{ignored}",
        },
        "settings.webhook_without_url": {
            "ja": "notify.kind が 'webhook' ですが、notify.webhook_url も credentials.webhook_block も設定されていません。"
                  "どちらかを設定するか（LMCO2_NOTIFY__WEBHOOK_URL、LMCO2_CREDENTIALS__WEBHOOK_BLOCK）、"
                  "通知が不要なら notify.kind を none にしてください。",
            "en": "notify.kind is 'webhook' but neither notify.webhook_url nor credentials.webhook_block is set; "
                  "set one of them (LMCO2_NOTIFY__WEBHOOK_URL, LMCO2_CREDENTIALS__WEBHOOK_BLOCK), "
                  "or set notify.kind to none",
        },
        "settings.profile_empty": {
            "ja": "プロファイル名が空です（{source}）。local, gke のようなプロファイル名か、YAML ファイルのパスを指定してください。",
            "en": "the profile name is empty ({source}); give a profile name such as local or gke, or the path of a YAML file",
        },
        "settings.profile_is_folder": {
            "ja": "プロファイル {profile!r} はフォルダです。プロファイルの YAML ファイルのパスを指定してください（例: " + SHIPPED_EXAMPLE + "）。",
            "en": "profile {profile!r} is a folder; give the path of a profile YAML file, such as " + SHIPPED_EXAMPLE,
        },
        "settings.profile_unreadable": {
            "ja": "プロファイル {profile!r} を読めませんでした（{reason}）。ファイルの権限とパスを確認してください。",
            "en": "profile {profile!r} could not be read ({reason}); check the file's path and permissions",
        },
        "settings.date_not_in_calendar": {
            "ja": "日付 {value!r} は YYYY-MM-DD または YYYYMMDD の形ですが、その日は存在しません（月は 1〜12、日はその月の日数まで）。"
                  "月と日を確認してください。",
            "en": "run date {value!r} has the form YYYY-MM-DD or YYYYMMDD, but the day does not exist (months are 1-12, "
                  "days within the month); check the month and the day",
        },
        "settings.date_year_too_early": {
            "ja": "日付 {value!r} の年 {year} は " + str(MIN_RUN_YEAR) + " より前です。フォルダ名 YYYYMMDD の年は 4 桁なので、"
                  + str(MIN_RUN_YEAR) + " 年以降の日付を指定してください。",
            "en": "run date {value!r} has the year {year}, before " + str(MIN_RUN_YEAR) + "; folder names are YYYYMMDD with a "
                  "four-digit year, so give a date in " + str(MIN_RUN_YEAR) + " or later",
        },
        "settings.profile_not_mapping": {
            "ja": "プロファイル {profile!r} の中身が YAML のマッピングではありません（実際: {kind}）。"
                  "設定を「キー: 値」の行で書いてください（例: " + SHIPPED_EXAMPLE + "）。",
            "en": "profile {profile!r} must be a YAML mapping, got {kind}; write the settings as key: value lines, "
                  "as in " + SHIPPED_EXAMPLE,
        },
    }
)


class _Section(BaseModel):
    # hide_input_in_errors keeps str() of a ValidationError from writing out the whole input, which
    # for a YAML alias bomb takes minutes and gigabytes. errors() still carries each input.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class StorageSettings(_Section):
    """URL templates of the five storage roots; ``{yyyymmdd}`` and ``{data_dir}`` are filled in."""

    input: str = Field(description="Client drop folder of one day (read).")
    raw: str = Field(description="Our verified copy of the client's day.")
    temp: str = Field(description="Intermediates (segments) and phase markers.")
    processed: str = Field(description="Results in the client's format, before delivery.")
    output: str = Field(description="Client delivery folder of one day (write, possibly write-only).")
    reference_geo: str | None = Field(
        None, description="Geo attributes kept outside the daily folder; used when the day has none."
    )
    output_write_only: bool = Field(
        False, description="The output store allows PutObject only: no list, read or bucket creation."
    )
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="fsspec storage options per root name (endpoint_url, region, ...). No secrets here.",
    )

    @field_validator("input", "raw", "temp", "processed", "output")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        _check_template(value)
        if "{yyyymmdd}" not in value:
            raise OperatorValueError("settings.root_without_date", value=mask_url_credentials(value))
        return value

    def url(self, root: str, run_date: dt.date | str, data_dir: str | Path = ".") -> str:
        """Return the URL of ``root`` for ``run_date``, with a trailing slash."""
        if root not in ROOTS:
            raise ValueError(f"unknown storage root {root!r}; expected one of {ROOTS}")
        day = parse_run_date(run_date)
        # strftime("%Y") does not pad years below 1000 on Linux, so the digits are written here.
        yyyymmdd = f"{day.year:04d}{day.month:02d}{day.day:02d}"
        url = str(getattr(self, root)).format(yyyymmdd=yyyymmdd, data_dir=str(data_dir).rstrip("/"))
        return url if url.endswith("/") else url + "/"

    def options_for(self, root: str) -> dict[str, Any]:
        """Return the fsspec options for ``root`` (a copy)."""
        return dict(self.options.get(root, {}))


class ClusterSettings(_Section):
    """Cluster of the validate and compute phases: kind, size and lifetime."""

    kind: Literal["local", "kubernetes"] = Field("local", description="LocalCluster or dask-kubernetes KubeCluster.")
    n_workers: int = Field(2, ge=1, le=512, description="Workers at start.")
    threads_per_worker: int = Field(1, ge=1, le=64, description="Threads per worker process.")
    memory_limit: str = Field("4GiB", description="Memory limit per worker (Dask size string).")
    min_workers: int | None = Field(None, ge=0, description="Adaptive minimum (kubernetes).")
    max_workers: int | None = Field(None, ge=1, description="Adaptive maximum (kubernetes).")
    namespace: str = Field("lm-co2", description="Kubernetes namespace of the DaskCluster.")
    spec_path: str = Field("k8s/daskcluster.yaml", description="DaskCluster spec template, relative to the project root.")
    image: str | None = Field(None, description="Image of scheduler and workers; overrides the template.")
    idle_timeout_s: int = Field(900, ge=60, description="The operator deletes an idle cluster after this many seconds.")
    compute_timeout_s: int = Field(1500, ge=10, description="Client-side deadline for the compute phase.")
    dashboard: bool = Field(
        False,
        description="Log the link of the local Dask dashboard. A LocalCluster always serves it on a random port of 127.0.0.1; GKE logs it always.",
    )
    worker_profiling: bool = Field(
        False, description="Run Dask's statistical profiler on the workers (fills the dashboard's profile page; costs about 40 % of task CPU)."
    )

    @field_validator("memory_limit")
    @classmethod
    def _positive_size(cls, value: str) -> str:
        # LocalCluster takes "auto", or a size that dask.utils.parse_bytes reads. It reads a plain
        # number of at most 1 as a fraction of the machine's memory, 0 as no limit and "" as one
        # byte, so those are rejected. The kubernetes cluster takes its sizes from spec_path instead.
        if value == "auto":
            return value
        if not value.strip():
            raise OperatorValueError("settings.bad_memory_limit", value=value)
        try:
            size = parse_bytes(value)
        except (ValueError, OverflowError) as error:
            raise OperatorValueError("settings.bad_memory_limit", value=value) from error
        if size <= 0 or _is_fraction(value):
            raise OperatorValueError("settings.bad_memory_limit", value=value)
        return value

    @model_validator(mode="after")
    def _adaptive_bounds(self) -> ClusterSettings:
        if self.min_workers is not None and self.max_workers is not None and self.min_workers > self.max_workers:
            raise OperatorValueError("settings.adaptive_bounds", min_workers=self.min_workers, max_workers=self.max_workers)
        return self


class OutputSettings(_Section):
    """Format the client receives."""

    format: Literal["parquet", "csv", "jsonl"] = Field("parquet", description="File format of delivered tables.")
    compression: str | None = Field(
        "zstd", description="Parquet compression codec, one of PARQUET_CODECS or null (ignored for csv/jsonl, which are not compressed)."
    )
    include_breakdown: bool = Field(True, description="Deliver distance and CO2 by road class and area type.")
    include_rejects: bool = Field(True, description="Deliver the rejects table with reason codes.")
    csv_escape_formulas: bool = Field(
        False,
        description=(
            "CSV only: put an apostrophe before text that a spreadsheet would run as a formula (starting with =, +, -, @, "
            "tab or carriage return). Off by default, because it changes the ids the client joins on; the output phase "
            "counts such cells either way."
        ),
    )
    report_timezone: str = Field(
        "Asia/Tokyo", description="IANA time zone of the hours in the run report's CO2-by-hour chart (the fleet's clock)."
    )

    @model_validator(mode="after")
    def _known_codec(self) -> OutputSettings:
        # csv and jsonl are written uncompressed and ignore the codec, but a name that is no codec
        # at all is still a typo.
        if self.compression is None or self.compression.lower() in PARQUET_CODECS:
            return self
        raise OperatorValueError(
            "settings.bad_compression", value=self.compression, format=self.format, choices=", ".join(PARQUET_CODECS),
            ignored="" if self.format == "parquet" else f" (the codec is ignored: {self.format} files are not compressed)",
            ignored_ja="" if self.format == "parquet" else f"{self.format} のファイルは圧縮されないため、この設定は使われません。",
        )

    @field_validator("report_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise OperatorValueError("settings.unknown_timezone", value=value) from error
        return value


class TransferSettings(_Section):
    """Copy method from input to raw: Storage Transfer Service or object copy."""

    mode: Literal["fsspec", "sts"] = Field("fsspec", description="Object copy through fsspec, or Storage Transfer Service.")
    project_id: str | None = Field(None, description="GCP project of the transfer job (sts).")
    job_name: str | None = Field(None, description="Existing transfer job, 'transferJobs/…' (sts).")
    timeout_s: int = Field(1200, ge=10, description="Deadline for the transfer operation.")
    retries: int = Field(3, ge=0, le=10, description="Attempts per object that failed to copy or verify.")


class NotifySettings(_Section):
    """Completion notice after delivery."""

    kind: Literal["none", "webhook"] = Field("none", description="No notice, or an HTTP POST.")
    webhook_url: SecretStr | None = Field(None, description="Webhook URL; a secret, never logged.")


class LoggingSettings(_Section):
    """Format of the flow's console log records."""

    format: Literal["text", "json"] = Field("text", description="Plain text, or one JSON object per line for Cloud Logging.")


class CredentialSettings(_Section):
    """Locations of the run's secrets: names of blocks and secrets, never their values."""

    aws_block: str | None = Field(None, description="Prefect block (prefect_aws.AwsCredentials) with the client's AWS keys or role.")
    aws_secret: str | None = Field(
        None, description="Secret Manager secret with JSON {access_key_id, secret_access_key}, read when aws_block is not set."
    )
    webhook_block: str | None = Field(None, description="Prefect Secret block with the completion webhook URL.")


class SpatialSettings(_Section):
    """Spatial join of segments to the geo attributes."""

    link_max_distance_m: float = Field(25.0, gt=0, le=500, description="Nearest road link must lie within this distance of the segment midpoint.")


class Settings(_Section):
    """All settings of one run."""

    profile: str = Field("local", description="Name of the profile the settings came from.")
    language: Literal["ja", "en"] = Field("ja", description="Language of operator messages and reports.")
    data_dir: str = Field("./var", description="Folder that fills '{data_dir}' in storage templates.")
    storage: StorageSettings
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)
    transfer: TransferSettings = Field(default_factory=TransferSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    spatial: SpatialSettings = Field(default_factory=SpatialSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    credentials: CredentialSettings = Field(default_factory=CredentialSettings)
    contract: ContractSettings = Field(default_factory=ContractSettings)
    emission: EmissionSettings = Field(default_factory=EmissionSettings)
    plausibility: PlausibilitySettings = Field(default_factory=PlausibilitySettings)

    @field_validator("storage")
    @classmethod
    def _separate_roots(cls, storage: StorageSettings, info: ValidationInfo) -> StorageSettings:
        # data_dir is declared before storage, so pydantic has validated it already.
        data_dir = info.data.get("data_dir")
        if isinstance(data_dir, str):
            _reject_overlapping_roots(storage, data_dir)
        return storage

    @model_validator(mode="after")
    def _webhook_has_url(self) -> Settings:
        # flows.credentials.with_credentials reads the URL from the Prefect Secret block named by
        # credentials.webhook_block when notify.webhook_url is not set.
        if self.notify.kind == "webhook" and self.notify.webhook_url is None and not self.credentials.webhook_block:
            raise OperatorValueError("settings.webhook_without_url")
        return self

    def url(self, root: str, run_date: dt.date | str) -> str:
        """Return the URL of ``root`` for ``run_date``."""
        return self.storage.url(root, run_date, data_dir=self.data_dir)


def _check_template(value: str) -> None:
    """Raise when ``value`` has a placeholder other than TEMPLATE_FIELDS or a lone brace."""
    masked = mask_url_credentials(value)
    try:
        fields = [(name, conversion, spec) for _, name, spec, conversion in string.Formatter().parse(value) if name is not None]
    except ValueError as error:
        raise OperatorValueError(
            "settings.bad_placeholder", value=masked, problem=f"a lone brace ({error})", problem_ja="対になっていない波かっこがあります"
        ) from error
    for name, conversion, spec in fields:
        if name not in TEMPLATE_FIELDS or conversion or spec:
            written = "{" + name
            if conversion:
                written += f"!{conversion}"
            if spec:
                written += f":{spec}"
            written += "}"
            raise OperatorValueError(
                "settings.bad_placeholder", value=masked, problem=f"unknown placeholder {written}",
                problem_ja=f"不明なプレースホルダー {written} があります",
            )


def _reject_overlapping_roots(storage: StorageSettings, data_dir: str) -> None:
    """Raise when two of the five roots, rendered for one date, are one folder or one is inside the other."""
    folders = {root: _folder_key(storage.url(root, dt.date(2000, 1, 1), data_dir=data_dir)) for root in ROOTS}
    for index, first in enumerate(ROOTS):
        for second in ROOTS[index + 1:]:
            outer, inner = folders[first], folders[second]
            if outer == inner:
                relation = ("are the same folder", "同じフォルダです")
            elif inner.startswith(outer + "/") or outer.startswith(inner + "/"):
                relation = ("are nested, one inside the other", "入れ子になっています（一方が他方の中にあります）")
            else:
                continue
            raise OperatorValueError(
                "settings.roots_overlap", first=first, second=second,
                first_url=mask_url_credentials(getattr(storage, first)), second_url=mask_url_credentials(getattr(storage, second)),
                relation=relation[0], relation_ja=relation[1],
            )


def _folder_key(url: str) -> str:
    """Return ``url`` as ``protocol://normalised/path``, equal for two spellings of one folder.

    A plain path and a ``file://`` URL are the same local folder, resolved against the current
    folder as :func:`load_settings` resolves ``data_dir``.
    """
    protocol, separator, path = url.partition("://")
    if not separator:
        protocol, path = "", url
    protocol = _SAME_STORE.get(protocol.lower(), protocol.lower())
    if not protocol:
        return "://" + str(Path(os.path.abspath(path)))
    return f"{protocol}://{posixpath.normpath(path)}"


def _is_fraction(value: str) -> bool:
    """Return whether Dask reads the memory limit ``value`` as a fraction of the machine's memory."""
    try:
        return float(value) <= 1
    except ValueError:
        return False


def parse_run_date(value: dt.date | str) -> dt.date:
    """Parse ``2026-12-01`` or ``20261201`` into a date.

    Raises
    ------
    ValueError
        If ``value`` is not in one of those forms.
    OperatorValueError
        A ``ValueError`` too: if ``value`` has one of the forms but names a day that does not exist
        (2026-02-29), or a year before MIN_RUN_YEAR.
    """
    if isinstance(value, dt.datetime):
        return _checked_year(value.date(), value)
    if isinstance(value, dt.date):
        return _checked_year(value, value)
    text = str(value).strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            day = dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
        return _checked_year(day, value)
    if _DATE_FORM.fullmatch(text):
        raise OperatorValueError("settings.date_not_in_calendar", value=str(value))
    raise ValueError(f"run date {value!r} is not a date; write it as YYYY-MM-DD or YYYYMMDD, e.g. 2026-12-01")


# The forms strptime reads above, with any digits, to tell a day that does not exist from a wrong form.
_DATE_FORM = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}|[0-9]{8}")


def _checked_year(day: dt.date, value: object) -> dt.date:
    if day.year < MIN_RUN_YEAR:
        raise OperatorValueError("settings.date_year_too_early", value=str(value), year=day.year)
    return day


def load_settings(
    profile: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Load a profile, apply ``LMCO2_*`` environment overrides and explicit ``overrides``.

    Parameters
    ----------
    profile
        A profile name shipped with the package (``local``, ``gke``) or a path to a YAML file.
        ``None`` takes ``LMCO2_PROFILE`` from ``environ``, else ``local``.
    environ
        Environment to read overrides from; defaults to ``os.environ`` at call time.
    overrides
        Nested values applied last (CLI options, flow parameters).

    Raises
    ------
    FileNotFoundError
        If the profile is neither a shipped name nor an existing file.
    ProfileSyntaxError
        If the profile file is not valid YAML; it carries the line and column of the error.
    OperatorValueError
        If the profile name is empty, names a folder or an unreadable file, or the file is YAML
        but not a mapping of settings.
    pydantic.ValidationError
        If the merged values are invalid; the message names the field.
        :meth:`compute.settings_errors.SettingsError.from_validation_error` gives the operator's message in every language.
    """
    env = dict(os.environ if environ is None else environ)
    name = profile if profile is not None else env.get(f"{ENV_PREFIX}PROFILE", "local")
    if not str(name).strip():
        # Path("") is the current folder, which would be read as the profile file.
        source = "--profile" if profile is not None else f"{ENV_PREFIX}PROFILE"
        raise ProfileFileError("settings.profile_empty", source=source)
    values = _read_profile(name)
    _deep_update(values, _env_overrides(env))
    if overrides:
        _deep_update(values, dict(overrides))
    settings = Settings.model_validate(values)
    if not _is_url(settings.data_dir):
        settings = settings.model_copy(update={"data_dir": str(Path(settings.data_dir).resolve())})
    return settings


class ProfileFileError(OperatorValueError):
    """A profile that cannot be read as settings at all: an empty name, a folder, not UTF-8, not a mapping.

    No setting was read, so the command prints the text alone, without the heading of invalid settings.
    """


class ProfileSyntaxError(ValueError):
    """A profile file that is not valid YAML, with the position the YAML parser stopped at.

    Parameters
    ----------
    source
        Path of the profile file.
    problem
        The parser's description of the error (English, from PyYAML).
    line, column
        1-based position of the error, None when the parser gave none.
    context
        What the parser was reading when it failed, with its own 1-based position, if it gave one.
    """

    def __init__(
        self, source: str, problem: str, line: int | None = None, column: int | None = None,
        context: tuple[str, int, int] | None = None,
    ) -> None:
        self.source = source
        self.problem = problem
        self.line = line
        self.column = column
        self.context = context
        where = f" at line {line}, column {column}" if line is not None else ""
        super().__init__(f"profile file {source!r} is not valid YAML{where}: {problem}; correct the file and run again")

    @classmethod
    def from_yaml(cls, source: str, error: yaml.YAMLError) -> ProfileSyntaxError:
        """Build the error from PyYAML's, whose marks count lines and columns from 0."""
        if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
            return cls(source, str(error))
        mark = error.problem_mark
        context = None
        if error.context and error.context_mark is not None:
            context = (str(error.context), error.context_mark.line + 1, error.context_mark.column + 1)
        return cls(source, str(error.problem or error), mark.line + 1, mark.column + 1, context)


def _read_profile(name: str | Path) -> dict[str, Any]:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise FileNotFoundError(f"profile file {str(path)!r} not found; pass a shipped profile name (local, gke) or an existing YAML file")
        if path.is_dir():
            raise ProfileFileError("settings.profile_is_folder", profile=str(path))
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise ProfileFileError("settings.profile_not_utf8", profile=str(path), position=error.start + 1) from error
        except OSError as error:
            raise ProfileFileError("settings.profile_unreadable", profile=str(path), reason=error.strerror or type(error).__name__) from error
        source = str(path)
    else:
        shipped = resources.files("compute.profiles") / f"{name}.yaml"
        if not shipped.is_file():
            raise FileNotFoundError(f"profile {str(name)!r} not found; shipped profiles are 'local' and 'gke', or pass a YAML path")
        text = shipped.read_text(encoding="utf-8")
        source = str(shipped)
    try:
        data = yaml.load(text, Loader=_ProfileLoader) or {}
    except yaml.YAMLError as error:
        raise ProfileSyntaxError.from_yaml(source, error) from error
    if not isinstance(data, dict):
        raise ProfileFileError("settings.profile_not_mapping", profile=str(name), kind=type(data).__name__)
    return data


class _ProfileLoader(yaml.SafeLoader):
    """PyYAML's safe loader that rejects a key written twice in one mapping, which it would let the last win."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            # A merge key (<<) may bring a key that the mapping then writes again: that overrides it.
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key, which the base class rejects with its own error
                continue
            if repeated:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    paths = {key: tuple(key[len(ENV_PREFIX):].lower().split("__")) for key in sorted(env)
             if key.startswith(ENV_PREFIX) and key != f"{ENV_PREFIX}PROFILE"}
    _reject_nested_conflicts(paths)
    for key, path in paths.items():
        raw = env[key]
        node = values
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _env_value(raw)
    return values


def _reject_nested_conflicts(paths: Mapping[str, tuple[str, ...]]) -> None:
    """Raise when one variable sets a setting and another a setting inside it
    (``LMCO2_CLUSTER=5`` with ``LMCO2_CLUSTER__N_WORKERS=2``): neither can win."""
    for first, outer in paths.items():
        for second, inner in paths.items():
            if len(inner) > len(outer) and inner[: len(outer)] == outer:
                raise OperatorValueError("settings.env_conflict", first=first, second=second)


_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*):[^/@\s]*@")


def mask_url_credentials(text: str) -> str:
    """Replace the password of every ``scheme://user:password@host`` in ``text`` with ``***``."""
    return _URL_CREDENTIALS.sub(r"\1:***@", text)


def _env_value(raw: str) -> Any:
    """Parse an override as a YAML scalar or collection; text that is not valid YAML stays a string.

    The field's validation then reports a wrong type with the variable's name, instead of the
    YAML parser failing with a traceback.
    """
    if not raw.strip():
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _deep_update(target: dict[str, Any], source: Mapping[str, Any]) -> None:
    for key, value in source.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def _is_url(text: str) -> bool:
    return "://" in text
