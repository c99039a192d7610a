"""A reader that closes the command's output early ends the command quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from compute.sample import SampleSpec, write_sample_day
from compute.storage import Store
from tests.conftest import RUN_DATE


def test_validate_into_a_closed_pipe_prints_no_traceback(tmp_path: Path) -> None:
    day = tmp_path / "20261201"
    write_sample_day(Store(str(day)), RUN_DATE, SampleSpec(trips=30, vertices_per_trip=8))
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before the command writes its first line
    try:
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", "validate", str(day)], stdout=writer, stderr=subprocess.PIPE, text=True,
            timeout=120, check=False,
        )
    finally:
        os.close(writer)
    assert "Traceback" not in done.stderr
    assert "BrokenPipeError" not in done.stderr
    assert "想定外" not in done.stderr
    assert done.returncode == 1
