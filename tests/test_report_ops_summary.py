"""Litres of liquid fuel in the run report and its Prefect artifact, and the dataset order of a rerun."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from compute import charts
from compute import columns as c
from compute import phases as ph
from compute.contract.schema import DATASETS
from compute.report import RunSummary, render_markdown, render_text
from compute.settings import Settings, load_settings
from compute.storage import Manifest, read_phase_marker, write_phase_marker
from tests.conftest import RUN_DATE, write_profile

FUEL_ROW_JA = "| 総燃料消費量（液体燃料のみ。CNG・電気は含まない） | 4.3 L |"
FUEL_ROW_EN = "| Total fuel (liquid fuels only, without CNG and electricity) | 4.3 L |"
NOTE_JA = "L の合計に含まれないトリップ: 2 件（CNG 1、電気 1）"
NOTE_EN = "Trips not in the litres total: 2 (CNG 1, electric 1)"


def _report(fuel_types: list[str], fuel_l: list[float]) -> charts.RunReport:
    """Report of one 10 km passenger-car trip per fuel type, without segments."""
    n = len(fuel_types)
    names = [f"v{i}" for i in range(n)]
    trips = pd.DataFrame(
        {
            c.TRIP_ID: [f"t{i}" for i in range(n)], c.VEHICLE_ID: names, c.DISTANCE_KM: [10.0] * n,
            c.CO2_TTW_KG: [2.0] * n, c.CO2_G_PER_KM: [200.0] * n, c.METHOD: ["gps_profile"] * n, c.FUEL_L: fuel_l,
        }
    )
    vehicles = pd.DataFrame({c.VEHICLE_ID: names, c.VEHICLE_CLASS: ["passenger"] * n, c.FUEL_TYPE: fuel_types})
    inputs = charts.ReportInputs(
        run_date="2026-12-01", trips=trips, vehicles=vehicles, rejects=pd.DataFrame(),
        segments=charts.merge_aggregates([]),
    )
    return charts.build_run_report(inputs, lang="en")


@pytest.fixture(scope="module")
def mixed_report() -> charts.RunReport:
    """A petrol and a diesel car with 4.3 L together, a CNG car and an electric car."""
    return _report(["gasoline", "diesel", "cng", "electric"], [2.0, 2.3, np.nan, np.nan])


class TestReportLitres:
    def test_japanese_page(self, mixed_report: charts.RunReport) -> None:
        page = mixed_report.markdown["ja"]
        assert FUEL_ROW_JA in page
        assert NOTE_JA in page

    def test_english_page(self, mixed_report: charts.RunReport) -> None:
        page = mixed_report.markdown["en"]
        assert FUEL_ROW_EN in page
        assert NOTE_EN in page

    @pytest.mark.parametrize(("lang", "row", "note", "next_section"), [
        ("ja", FUEL_ROW_JA, NOTE_JA, "## 妥当性の警告"),
        ("en", FUEL_ROW_EN, NOTE_EN, "## Plausibility warnings"),
    ])
    def test_note_under_key_figures(self, mixed_report: charts.RunReport, lang: str, row: str, note: str, next_section: str) -> None:
        page = mixed_report.markdown[lang]
        assert page.index(row) < page.index(note) < page.index(next_section)

    def test_liquid_only_day_has_no_note(self) -> None:
        page = _report(["gasoline", "hybrid"], [2.0, 2.3]).markdown["ja"]
        assert FUEL_ROW_JA in page
        assert "L の合計に含まれない" not in page


def _summary_of(report: charts.RunReport) -> RunSummary:
    phases = [
        {"phase": "compute", "skipped": False, "seconds": 1.0, "trips": 4, "distance_km": 40.0, "fuel_l": 4.3, "co2_ttw_kg": 8.0},
        {"phase": "output", "skipped": False, "seconds": 1.0, "warnings": {}},
    ]
    return RunSummary.from_phases("2026-12-01", phases, "/out/", report.figures)


class TestSummaryMarkdown:
    def test_note_before_dataset_table(self, mixed_report: charts.RunReport) -> None:
        page = render_markdown(_summary_of(mixed_report), "ja")
        assert page.index(FUEL_ROW_JA) < page.index(NOTE_JA) < page.index("| データセット |")

    def test_artifact_gives_litres(self, prefect_harness: None, mixed_report: charts.RunReport) -> None:
        from prefect import flow
        from prefect.artifacts import Artifact

        from flows.artifacts import publish_summary

        @flow(name="ops-litres-artifact")
        def publish() -> None:
            publish_summary(_summary_of(mixed_report), mixed_report, language="ja", key="ops-litres-artifact")

        publish()
        artifact = Artifact.get("ops-litres-artifact")
        assert artifact is not None
        text = str(artifact.data)
        summary_part, report_part = text.split("\n\n---\n\n")
        for part in (summary_part, report_part):
            assert FUEL_ROW_JA in part
            assert NOTE_JA in part


def _settings(tmp_path: Path) -> Settings:
    return load_settings(str(write_profile(tmp_path / "profile.yaml", tmp_path / "data")))


def _manifests(run: ph.DailyRun) -> dict[str, Manifest]:
    """Manifests of a finished day, whose validate manifest lists the datasets in contract order."""
    datasets = {name: {"rows_in": 100 + i, "rejected": i} for i, name in enumerate(DATASETS)}
    counts: dict[str, dict[str, object]] = {
        "validate": {"datasets": datasets},
        "compute": {"trips": 7, "distance_km": 20.0, "fuel_l": 2.0, "co2_ttw_kg": 5.0},
    }
    return {phase: Manifest(phase, run.day, root="", counts=dict(counts.get(phase, {}))) for phase in ph.PHASES}


class TestSkippedRerunOrder:
    """A rerun whose every phase is skipped lists the datasets as the run that did the work."""

    @pytest.fixture()
    def summaries(self, tmp_path: Path) -> tuple[RunSummary, RunSummary]:
        from flows.daily import summarise

        settings = _settings(tmp_path)
        run = ph.DailyRun.create(settings, RUN_DATE)
        manifests = _manifests(run)
        for manifest in manifests.values():
            write_phase_marker(run.state, manifest)
        marker = read_phase_marker(run.state, "validate")
        assert marker is not None
        assert list(marker.counts["datasets"]) == sorted(DATASETS), "the stored marker no longer sorts its datasets"

        done = summarise(run, settings, [ph.PhaseResult(phase, False, 1.0, manifests[phase]) for phase in ph.PHASES])
        rerun = summarise(run, settings, [ph.skipped(run, phase) for phase in ph.PHASES])
        return done, rerun

    def test_rows_in_contract_order(self, summaries: tuple[RunSummary, RunSummary]) -> None:
        done, rerun = summaries
        assert list(done.rows_in) == list(DATASETS)
        assert list(rerun.rows_in) == list(DATASETS)
        assert list(rerun.rejected) == list(DATASETS)

    def test_text_matches_first_run(self, summaries: tuple[RunSummary, RunSummary]) -> None:
        done, rerun = summaries
        for lang in ("ja", "en"):
            assert render_text(rerun, lang).splitlines()[1:3] == render_text(done, lang).splitlines()[1:3]

    def test_markdown_table_order(self, summaries: tuple[RunSummary, RunSummary]) -> None:
        _, rerun = summaries
        rows = [line.split(" | ")[0].removeprefix("| ") for line in render_markdown(rerun, "en").splitlines() if line.startswith("| ")]
        listed = [name for name in rows if name in DATASETS]
        assert listed == list(DATASETS)

    def test_unknown_dataset_goes_last(self) -> None:
        datasets = {name: {"rows_in": 1, "rejected": 0} for name in ["zz_extra", "aa_extra", *sorted(DATASETS)]}
        summary = RunSummary.from_phases("2026-12-01", [{"phase": "validate", "datasets": datasets}], "/out/")
        assert list(summary.rows_in) == [*DATASETS, "aa_extra", "zz_extra"]
