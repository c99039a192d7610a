"""lm-co2 compute package: contract, validation, emission model, Dask pipeline and storage.

Nothing here imports Prefect or ``flows``; every module runs in a plain Python process, in a
test, on a LocalCluster or on GKE without change.
"""

from compute import numba_cache as _numba_cache

# Before any compiled loop runs: copy the image's numba cache to the writable cache folder.
_numba_cache.seed()
