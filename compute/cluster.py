"""LocalCluster or dask-kubernetes KubeCluster behind one context manager.

The cluster opens when the block starts and closes when it ends, whatever ends it: success, an
exception, a timeout or a cancellation (Prefect turns SIGTERM into an exception, which unwinds
this block). On Kubernetes the DaskCluster also carries an idle timeout, so the operator deletes
it even if this process is killed before it can close it.
"""

from __future__ import annotations

import copy
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml
from distributed import Client, LocalCluster

from compute.settings import ClusterSettings

log = logging.getLogger(__name__)

#: Environment every worker needs; gcsfs hangs against GCS emulators and HNS lookups without it.
WORKER_ENV = {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "DO_NOT_TRACK": "1"}


@contextmanager
def open_cluster(
    settings: ClusterSettings,
    *,
    name: str = "lm-co2",
    labels: dict[str, str] | None = None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
    project_root: Path | None = None,
) -> Iterator[Client]:
    """Start a Dask cluster and a client for it; close both when the block exits.

    Parameters
    ----------
    settings
        Cluster kind and size.
    name
        Cluster name (Kubernetes resource name; lowercase letters, digits and dashes).
    labels
        Kubernetes labels added to the DaskCluster (run date, flow run id).
    on_event
        Called with ``("cluster_started", {...})`` and ``("cluster_closed", {...})`` so that the
        caller can log lifecycle records with its own logger.
    project_root
        Folder that ``settings.spec_path`` is relative to.
    """
    emit = on_event or (lambda event, fields: None)
    cluster: Any = None
    client: Client | None = None
    try:
        if settings.kind == "local":
            cluster = LocalCluster(
                n_workers=settings.n_workers,
                threads_per_worker=settings.threads_per_worker,
                memory_limit=settings.memory_limit,
                processes=True,
                dashboard_address=":0" if settings.dashboard else None,
                host="127.0.0.1",
                silence_logs=logging.WARNING,
            )
        else:
            cluster = _kube_cluster(settings, name=name, labels=labels or {}, project_root=project_root)
        client = Client(cluster)
        emit("cluster_started", {"kind": settings.kind, "name": name, "dashboard": getattr(cluster, "dashboard_link", None),
                                 "workers": len(client.scheduler_info().get("workers", {}))})
        yield client
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        emit("cluster_closed", {"kind": settings.kind, "name": name})


def build_cluster_spec(
    settings: ClusterSettings, *, name: str, labels: dict[str, str], project_root: Path | None = None
) -> dict[str, Any]:
    """Fill the DaskCluster template of ``settings.spec_path`` for one run.

    The template (``k8s/daskcluster.yaml``) holds sizes, node selectors and the service account; this
    sets the name, labels, image, worker count, idle timeout and the worker environment.
    """
    path = Path(settings.spec_path)
    if not path.is_absolute():
        path = (project_root or Path.cwd()) / path
    if not path.exists():
        raise FileNotFoundError(f"DaskCluster template {str(path)!r} not found; set cluster.spec_path to the k8s/daskcluster.yaml of this project")
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec = copy.deepcopy(spec)
    metadata = spec.setdefault("metadata", {})
    metadata["name"] = name
    metadata["namespace"] = settings.namespace
    metadata.setdefault("labels", {}).update(labels)
    body = spec["spec"]
    body["idleTimeout"] = settings.idle_timeout_s
    body["worker"]["replicas"] = settings.n_workers
    for part in ("scheduler", "worker"):
        for container in body[part]["spec"]["containers"]:
            if settings.image:
                container["image"] = settings.image
            env = {e["name"]: e for e in container.get("env", [])}
            for key, value in WORKER_ENV.items():
                env.setdefault(key, {"name": key, "value": value})
            container["env"] = list(env.values())
    return spec


def _kube_cluster(settings: ClusterSettings, *, name: str, labels: dict[str, str], project_root: Path | None) -> Any:
    from dask_kubernetes.operator import KubeCluster  # imported here: only the kubernetes profile needs it

    spec = build_cluster_spec(settings, name=name, labels=labels, project_root=project_root)
    cluster = KubeCluster(custom_cluster_spec=spec, namespace=settings.namespace, shutdown_on_close=True, quiet=True)
    if settings.min_workers is not None and settings.max_workers is not None:
        cluster.adapt(minimum=settings.min_workers, maximum=settings.max_workers)
    return cluster
