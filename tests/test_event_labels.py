"""Event log lines start with words in the profile's language; the JSON record keeps the event's name."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from compute.sample import SampleSpec, write_sample_day
from compute.storage import Store
from flows.daily import EVENT_LABELS, event_label
from tests.conftest import RUN_DATE, write_profile

ROOT = Path(__file__).resolve().parents[1]
# A call that passes an event name first: on_event("x", ...), emit("x", ...), self._emit("x", ...).
EMITTED = re.compile(r"\b(?:on_event|emit|_emit)\(\s*\"([a-z_]+)\"")


def _emitted_events() -> set[str]:
    names = set()
    for folder in ("compute", "flows"):
        for path in (ROOT / folder).rglob("*.py"):
            names.update(EMITTED.findall(path.read_text(encoding="utf-8")))
    return names


def test_every_emitted_event_has_labels() -> None:
    emitted = _emitted_events()

    assert {"run_started", "phase_completed", "object_delivered", "pieces_progress"} <= emitted
    assert sorted(emitted - EVENT_LABELS.keys()) == []


@pytest.mark.parametrize("event", sorted(EVENT_LABELS))
def test_label_in_both_languages(event: str) -> None:
    assert set(EVENT_LABELS[event]) == {"ja", "en"}
    # The English words are the ones the operations guide quotes.
    assert event_label(event, "en") == event.replace("_", " ")
    assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", event_label(event, "ja"))


def test_unknown_event_keeps_its_name() -> None:
    assert event_label("something_new", "ja") == "something new"


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["ja", "en"])
def test_flow_logs_events_in_profile_language(lang: str, tmp_path: Path, prefect_harness: None) -> None:
    from flows.daily import co2_daily

    profile = write_profile(tmp_path / "profile.yaml", tmp_path / "data", language=lang)
    write_sample_day(Store(str(tmp_path / "data" / "client" / "input" / RUN_DATE.strftime("%Y%m%d"))), RUN_DATE,
                     SampleSpec(trips=12, vertices_per_trip=6))

    # The tests set Prefect's loggers to WARNING, and its run loggers do not propagate to the root
    # logger, so the test lowers the flow logger's level and listens on it.
    records: list[logging.LogRecord] = []
    listener = logging.Handler(logging.INFO)
    listener.emit = records.append  # type: ignore[assignment,method-assign]
    flow_logger = logging.getLogger("prefect.flow_runs")
    level = flow_logger.level
    flow_logger.setLevel(logging.INFO)
    flow_logger.addHandler(listener)
    try:
        co2_daily(run_date=RUN_DATE, profile=str(profile), phases=["fetch", "validate"])
    finally:
        flow_logger.removeHandler(listener)
        flow_logger.setLevel(level)

    records = [r for r in records if getattr(r, "event", None)]
    events = [r.event for r in records]  # type: ignore[attr-defined]
    assert events[0] == "run_started"
    assert events.count("phase_started") == 2
    assert events.count("phase_completed") == 2
    for record in records:
        assert record.getMessage().startswith(EVENT_LABELS[record.event][lang]), record.getMessage()  # type: ignore[attr-defined]
