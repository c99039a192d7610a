"""The numba cache built for the image is loaded by a new process instead of compiling again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from compute import numba_cache

#: The loops a compute task calls from Python; the others are compiled into them.
TOP_LEVEL_LOOPS = (
    "compute.segments._segment_geometry", "compute.segments._segment_kinematics", "compute.spatial._locate_boxes",
    "compute.spatial._nearest_edges", "compute.emissions.profiles._segment_pass", "compute.emissions.profiles._tacho_trip_sums",
    "compute.emissions.profiles._segment_shares", "compute.tachograph._assign_sorted",
    "compute.metrics._dense_sums",
)

_WARM = (
    "import json, pathlib, sys\n"
    "from compute import numba_cache\n"
    "print(json.dumps(numba_cache.warm(pathlib.Path(sys.argv[1]))))\n"
)


def _warm_in_new_process(tmp_path: Path, name: str, cache_dir: Path, seed: Path | None) -> dict[str, dict[str, int]]:
    env = {k: v for k, v in os.environ.items() if k not in (numba_cache.SEED_ENV, "NUMBA_CACHE_DIR")}
    env.update({"NUMBA_CACHE_DIR": str(cache_dir), "NUMBA_CPU_NAME": "generic", "DO_NOT_TRACK": "1",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "AWS_EC2_METADATA_DISABLED": "true", "NO_GCE_CHECK": "True"})
    if seed is not None:
        env[numba_cache.SEED_ENV] = str(seed)
    root = tmp_path / name
    root.mkdir()
    done = subprocess.run([sys.executable, "-c", _WARM, str(root)], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_image_cache_is_loaded_not_compiled(tmp_path: Path) -> None:
    image_cache = tmp_path / "image-cache"
    built = _warm_in_new_process(tmp_path, "build", image_cache, seed=None)
    assert all(built[name]["misses"] >= 1 for name in TOP_LEVEL_LOOPS), built
    assert any(image_cache.rglob("*.nbc")), "the build wrote no machine code"

    pod_cache = tmp_path / "pod-tmp" / "numba-cache"
    started = _warm_in_new_process(tmp_path, "pod", pod_cache, seed=image_cache)
    assert all(started[name]["misses"] == 0 and started[name]["hits"] >= 1 for name in TOP_LEVEL_LOOPS), started


class TestSeed:
    def test_copies_missing_files_once(self, tmp_path: Path) -> None:
        seed = tmp_path / "seed"
        (seed / "compute").mkdir(parents=True)
        (seed / "compute" / "a.nbi").write_bytes(b"index")
        (seed / "compute" / "a.nbc").write_bytes(b"code")
        target = tmp_path / "tmp" / "numba-cache"
        env = {numba_cache.SEED_ENV: str(seed), "NUMBA_CACHE_DIR": str(target)}

        assert numba_cache.seed(env) == 2
        assert (target / "compute" / "a.nbc").read_bytes() == b"code"
        (target / "compute" / "a.nbc").write_bytes(b"newer")
        assert numba_cache.seed(env) == 0  # files already there are kept
        assert (target / "compute" / "a.nbc").read_bytes() == b"newer"
        assert not [p for p in (target / "compute").iterdir() if p.name.startswith(".")], "a temporary file was left behind"

    def test_nothing_to_do_without_both_folders(self, tmp_path: Path) -> None:
        assert numba_cache.seed({}) == 0
        assert numba_cache.seed({numba_cache.SEED_ENV: str(tmp_path / "missing"), "NUMBA_CACHE_DIR": str(tmp_path / "c")}) == 0
        assert numba_cache.seed({numba_cache.SEED_ENV: str(tmp_path), "NUMBA_CACHE_DIR": str(tmp_path)}) == 0
        assert not (tmp_path / "c").exists()
