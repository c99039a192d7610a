"""Run co2_daily with a compute step that takes minutes, so a test can stop the run mid-compute.

Usage: ``python slow_flow.py RUN_DATE PROFILE``. Only the per-piece compute function is
replaced, by one with the same name (so its Dask task keys keep the ``compute_piece`` prefix)
that sleeps before it calls the original; storage, Dask and Prefect are the real ones.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from compute import pipeline

_original = pipeline.compute_piece


def compute_piece(*args: Any, **kwargs: Any) -> Any:
    time.sleep(300)
    return _original(*args, **kwargs)


pipeline.compute_piece = compute_piece

if __name__ == "__main__":
    from flows.daily import co2_daily

    co2_daily(run_date=sys.argv[1], profile=sys.argv[2])
