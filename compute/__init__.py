"""lm-co2 compute package: contract, validation, emission model, Dask pipeline and storage.

Nothing here imports Prefect or ``flows``; every module runs in a plain Python process, in a
test, on a LocalCluster or on GKE without change.
"""
