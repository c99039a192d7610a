"""Control characters from the input reach the terminal escaped, as ``\\x1b`` or ``\\u202e``.

A trip id or a vehicle id with an ANSI escape sequence, a C1 control or a bidi override must not
clear, retitle or reorder the operator's terminal. ``validate`` runs in a subprocess, as an
operator starts it.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from compute.i18n import escape_controls
from compute.sample import SampleSpec, write_sample_day
from compute.storage import Store
from flows import cli
from tests.conftest import REPO_ROOT, RUN_DATE

# Clear the screen and turn the text red, then a right-to-left override.
TRIP_ID = "T-\x1b[2J\x1b[31mred\u202eevil"
# Set the window title (OSC ... BEL), a left-to-right isolate, a carriage return and a C1 CSI.
VEHICLE_ID = "V-\x1b]0;title\x07\u2066x\ry\x9b1m"
RAW_CONTROLS = ("\x1b", "\x07", "\r", "\x9b", "\u202e", "\u2066")


def _lm_co2(args: list[str], *, lang: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LMCO2_LANGUAGE": lang}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT)


@pytest.fixture()
def hostile_day(tmp_path: Path) -> Path:
    """A sample day without defects plus one trip whose trip and vehicle ids contain control characters.

    The vehicle is not in the master, so the trip is the only reject and the report's example.
    """
    day = tmp_path / "20261201"
    write_sample_day(Store(str(day)), RUN_DATE, SampleSpec(trips=10, vertices_per_trip=5, defects=False))
    sample = pq.read_table(day / "trajectories" / "part-00000.parquet")
    start = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)
    row = {
        "trip_id": TRIP_ID,
        "vehicle_id": VEHICLE_ID,
        "geometry": shapely.to_wkb(shapely.LineString([(139.75, 35.66), (139.751, 35.66)])),
        "timestamps": [start, start + dt.timedelta(seconds=10)],
    }
    columns = {name: pa.array([row.get(name)], sample.schema.field(name).type) for name in sample.column_names}
    pq.write_table(pa.table(columns).replace_schema_metadata(sample.schema.metadata), day / "trajectories" / "part-hostile.parquet")
    return day


class TestValidateReport:
    @pytest.mark.parametrize(("lang", "wording"), [("ja", "採用された車両 3 台の中にありません"), ("en", "not among the 3 accepted vehicles")])
    def test_ids_are_escaped(self, lang: str, wording: str, hostile_day: Path) -> None:
        done = _lm_co2(["validate", str(hostile_day)], lang=lang)

        assert done.returncode == 0, done.stderr
        for control in RAW_CONTROLS:
            assert control not in done.stdout
        assert "`T-\\x1b[2J\\x1b[31mred\\u202eevil`" in done.stdout
        assert "V-\\x1b]0;title\\x07\\u2066x\\ry\\x9b1m" in done.stdout
        assert wording in done.stdout
        assert "vehicle_not_in_master" in done.stdout


class TestMessages:
    def test_error_value_is_escaped(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        missing = tmp_path / "day\x1b[2J\u202e"

        assert cli.main(["validate", str(missing)]) == 1

        err = capsys.readouterr().err
        assert "\x1b" not in err
        assert "\u202e" not in err
        assert "day\\x1b[2J\\u202e" in err
        assert "が見つかりません" in err

    def test_usage_error_is_escaped(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as stop:
            cli.main(["--lang", "en", "run", "--bogus\x1b[2J"])

        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert "\x1b" not in err
        assert "unrecognized arguments: --bogus\\x1b[2J" in err


class TestEscapeControls:
    def test_printable_text_unchanged(self) -> None:
        text = "トリップ T-1 の車両 V-9（軽油）: 12.5 km \\ | `x`\n次の行"

        assert escape_controls(text, keep="\n") == text

    @pytest.mark.parametrize(
        ("control", "escaped"),
        [("\x00", "\\x00"), ("\x07", "\\x07"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"), ("\x1b", "\\x1b"), ("\x7f", "\\x7f"),
         ("\x9b", "\\x9b"), ("\u202a", "\\u202a"), ("\u202e", "\\u202e"), ("\u2066", "\\u2066"), ("\u2069", "\\u2069")],
    )
    def test_control_is_escaped(self, control: str, escaped: str) -> None:
        assert escape_controls(f"a{control}b") == f"a{escaped}b"

    def test_json_stays_valid(self) -> None:
        value = {"trip_id": TRIP_ID, "vehicle_id": VEHICLE_ID, "note": "日本語"}
        text = escape_controls(json.dumps(value, ensure_ascii=False, indent=2), keep="\n", notation="json")

        for control in RAW_CONTROLS:
            assert control not in text
        assert "日本語" in text
        assert json.loads(text) == value


class TestRunConsoleLogs:
    @pytest.fixture()
    def console(self) -> Iterator[tuple[logging.Handler, io.StringIO]]:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        root = logging.getLogger()
        root.addHandler(handler)
        yield handler, stream
        root.removeHandler(handler)

    def test_record_escaped_formatter_restored(self, console: tuple[logging.Handler, io.StringIO]) -> None:
        handler, stream = console
        formatter = handler.formatter

        def warn() -> None:
            record = logging.LogRecord("prefect.flow_runs", logging.WARNING, __file__, 0, "object retry name=%s", (TRIP_ID,), None)
            logging.getLogger().handle(record)

        cli._RunConsole().run(warn)

        assert stream.getvalue() == "object retry name=T-\\x1b[2J\\x1b[31mred\\u202eevil\n"
        assert handler.formatter is formatter
