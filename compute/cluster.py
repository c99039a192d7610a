"""LocalCluster or dask-kubernetes KubeCluster behind one context manager.

The cluster opens when the block starts and closes when it ends, whatever ends it: success, an
exception, a timeout or a cancellation (Prefect turns SIGTERM into an exception, which unwinds
this block). On Kubernetes the DaskCluster also carries an idle timeout, so the operator deletes
it even if this process is killed before it can close it, and
:func:`delete_leftover_clusters` deletes it by its run labels from the flow's crash and
cancellation hooks.

Worker records of the ``compute`` logger are forwarded to this process
(:meth:`distributed.Client.forward_logging`), and a scheduler plugin counts finished tasks per
task name so that the caller can report progress while the cluster works.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask
import yaml
from dask.utils import key_split
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin

from compute.i18n import current_language, message, register
from compute.settings import ClusterSettings

log = logging.getLogger(__name__)

register(
    {
        "cluster.leftover_deleted": {
            "ja": "実行 {flow_run_id} が残した DaskCluster {cluster} を削除しました。",
            "en": "Deleted the DaskCluster {cluster} that run {flow_run_id} left behind.",
        },
    }
)

#: glibc allocator settings of worker processes. Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536
#: by default, and any explicit trim threshold also switches off glibc's dynamic mmap threshold.
#: Then every array above 128 KiB is a new mapping whose pages fault on first touch. That cost
#: +57 % task CPU on the compute phase (10k benchmark day, one process, 11.9 s against 7.6 s).
#: Arrays of a piece (up to 1M vertices, 8 MB each) stay below the 32 MiB mmap threshold, so they
#: are reused from the heap. Free heap above 128 MiB still goes back to the operating system.
WORKER_MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": str(128 << 20), "MALLOC_MMAP_THRESHOLD_": str(32 << 20)}

#: Environment variable that switches Dask's statistical profiler on the workers, set from
#: ``ClusterSettings.worker_profiling``. The profiler samples every thread's stack each 10 ms and
#: holds the GIL while it does so. With it on, task CPU of the compute phase was 41 % higher
#: (100k benchmark day, one worker: 70.3 s against 49.7 s).
PROFILER_ENV = "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"

#: Environment every worker needs: gcsfs hangs against GCS emulators and HNS lookups without the
#: first variable, and the allocator settings above.
WORKER_ENV = {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "DO_NOT_TRACK": "1", **WORKER_MALLOC_ENV}

#: Module every worker imports while it starts (Dask's worker preload), before any task arrives.
#: Importing the task module pulls in pandas, pyarrow, geopandas, pyproj, shapely and numba and
#: seeds the numba cache (``compute.numba_cache``): 1.35 to 1.85 s of wall time per process here.
#: Without the preload the first task of each worker paid it inside the phase. With it the cost is
#: part of starting the cluster, and on GKE it overlaps the other pods' start.
WORKER_PRELOAD = "compute.pipeline"

#: Label keys that tie a DaskCluster to its flow run, for the leftover-cluster cleanup.
RUN_DATE_LABEL = "lm-co2/run-date"
FLOW_RUN_LABEL = "lm-co2/flow-run"
PROGRESS_PLUGIN = "lmco2-progress"
#: Task names whose progress is reported: one task per piece in compute.pipeline. The names are
#: those ``dask.utils.key_split`` returns, which drops a leading underscore.
PROGRESS_TASKS = (
    "validate_piece", "key_hash_buckets", "occurrences_with_hashes", "trip_index_of_piece", "align_tacho_piece", "compute_piece",
)


@contextmanager
def open_cluster(
    settings: ClusterSettings,
    *,
    name: str = "lm-co2",
    labels: dict[str, str] | None = None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
    project_root: Path | None = None,
    progress_interval_s: float = 2.0,
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
    progress_interval_s
        Seconds between two polls of the task counts; each change is emitted as
        ``("pieces_progress", {"task", "submitted", "finished", "failed"})``.
    """
    emit = on_event or (lambda event, fields: None)
    cluster: Any = None
    client: Client | None = None
    watcher: _ProgressWatcher | None = None
    try:
        if settings.kind == "local":
            # The nanny reads the variables it sets before spawning a worker from this key.
            pre_spawn = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_MALLOC_ENV}
            worker_config = {"distributed.nanny.pre-spawn-environ": pre_spawn,
                             "distributed.worker.profile.enabled": settings.worker_profiling}
            with dask.config.set(worker_config):
                cluster = LocalCluster(
                    n_workers=settings.n_workers,
                    threads_per_worker=settings.threads_per_worker,
                    memory_limit=settings.memory_limit,
                    processes=True,
                    dashboard_address="127.0.0.1:0",  # None would still bind the default :8787
                    host="127.0.0.1",
                    silence_logs=logging.WARNING,
                    preload=[WORKER_PRELOAD],
                )
        else:
            cluster = _kube_cluster(settings, name=name, labels=labels or {}, project_root=project_root)
        client = Client(cluster)
        client.forward_logging("compute", level=logging.INFO)
        client.register_plugin(TaskProgress(), name=PROGRESS_PLUGIN)
        watcher = _ProgressWatcher(client, emit, interval_s=progress_interval_s)
        watcher.start()
        emit("cluster_started", {"kind": settings.kind, "name": name, "dashboard": _dashboard_link(cluster, settings),
                                 "workers": len(client.scheduler_info().get("workers", {}))})
        yield client
    finally:
        if watcher is not None:
            watcher.stop()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        emit("cluster_closed", {"kind": settings.kind, "name": name})


def _dashboard_link(cluster: Any, settings: ClusterSettings) -> str | None:
    """Return the dashboard URL, or ``None`` when the local dashboard is off."""
    if settings.kind == "local" and not settings.dashboard:
        return None
    try:
        return str(cluster.dashboard_link)
    except Exception:  # noqa: BLE001 - a missing dashboard must not stop the run
        return None


class TaskProgress(SchedulerPlugin):
    """Count submitted and finished tasks per task name on the scheduler."""

    idempotent = True

    def __init__(self) -> None:
        self.submitted: dict[str, int] = {}
        self.finished: dict[str, int] = {}
        self.failed: dict[str, int] = {}

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        name = key_split(key)
        if name not in PROGRESS_TASKS:
            return
        if start == "released" and finish == "waiting":
            self.submitted[name] = self.submitted.get(name, 0) + 1
        elif finish == "memory" and start == "processing":
            self.finished[name] = self.finished.get(name, 0) + 1
        elif finish == "erred":
            self.failed[name] = self.failed.get(name, 0) + 1


def _read_progress(dask_scheduler: Any) -> dict[str, dict[str, int]]:
    plugin = dask_scheduler.plugins.get(PROGRESS_PLUGIN)
    if plugin is None:
        return {}
    names = set(plugin.submitted) | set(plugin.finished)
    return {n: {"submitted": plugin.submitted.get(n, 0), "finished": plugin.finished.get(n, 0), "failed": plugin.failed.get(n, 0)} for n in names}


class _ProgressWatcher:
    """Poll the scheduler plugin and emit ``pieces_progress`` whenever a count changed."""

    def __init__(self, client: Client, emit: Callable[[str, dict[str, Any]], None], *, interval_s: float) -> None:
        self._client = client
        self._emit = emit
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._seen: dict[str, dict[str, int]] = {}
        self._thread = threading.Thread(target=self._loop, name="lmco2-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval_s + 5)
        self.poll()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.poll()

    def poll(self) -> None:
        try:
            counts = self._client.run_on_scheduler(_read_progress)
        except Exception:  # noqa: BLE001 - progress is best effort; the scheduler may be closing
            return
        for name, current in sorted(counts.items()):
            if current != self._seen.get(name):
                self._seen[name] = current
                self._emit("pieces_progress", {"task": name, **current})


def build_cluster_spec(
    settings: ClusterSettings, *, name: str, labels: dict[str, str], project_root: Path | None = None
) -> dict[str, Any]:
    """Fill the DaskCluster template of ``settings.spec_path`` for one run.

    The template (``k8s/daskcluster.yaml``) contains sizes, node selectors and the service account; this
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
    selector = body.get("scheduler", {}).get("service", {}).get("selector")
    if isinstance(selector, dict) and "dask.org/cluster-name" in selector:
        selector["dask.org/cluster-name"] = name  # the operator copies the Service spec as it is
    for part in ("scheduler", "worker"):
        body[part].setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    body["idleTimeout"] = settings.idle_timeout_s
    body["worker"]["replicas"] = settings.n_workers
    for part in ("scheduler", "worker"):
        for container in body[part]["spec"]["containers"]:
            if settings.image:
                container["image"] = settings.image
            env = {e["name"]: e for e in container.get("env", [])}
            for key, value in WORKER_ENV.items():
                env.setdefault(key, {"name": key, "value": value})
            if part == "worker":
                env[PROFILER_ENV] = {"name": PROFILER_ENV, "value": str(settings.worker_profiling)}
            container["env"] = list(env.values())
    return spec


def _kube_cluster(settings: ClusterSettings, *, name: str, labels: dict[str, str], project_root: Path | None) -> Any:
    from dask_kubernetes.operator import KubeCluster  # imported here: only the kubernetes profile needs it

    spec = build_cluster_spec(settings, name=name, labels=labels, project_root=project_root)
    cluster = KubeCluster(custom_cluster_spec=spec, namespace=settings.namespace, shutdown_on_close=True, quiet=True)
    if settings.min_workers is not None and settings.max_workers is not None:
        cluster.adapt(minimum=settings.min_workers, maximum=settings.max_workers)
    return cluster


def run_labels(run_date: str, flow_run_id: str) -> dict[str, str]:
    """Kubernetes labels that tie a DaskCluster to one run (``run_date`` as YYYYMMDD)."""
    return {"app.kubernetes.io/part-of": "lm-co2", RUN_DATE_LABEL: run_date, FLOW_RUN_LABEL: flow_run_id}


def delete_leftover_clusters(namespace: str, flow_run_id: str, *, api: Any = None) -> list[str]:
    """Delete every DaskCluster labelled with ``flow_run_id`` in ``namespace``; return their names.

    A flow that died before it closed its cluster (crash, cancellation) leaves the DaskCluster,
    its scheduler and its workers running until the idle timeout. The flow's ``on_crashed`` and
    ``on_cancellation`` hooks call this with the run's id. Deleting the DaskCluster lets
    Kubernetes garbage-collect the pods and services the operator created for it.

    Parameters
    ----------
    api
        A ``kr8s`` API object; the in-cluster or kubeconfig credentials are used when omitted.
    """
    import kr8s
    from kr8s.objects import new_class

    if not flow_run_id:
        raise ValueError("flow_run_id is empty; pass the id of the flow run whose clusters should be deleted")
    dask_cluster = new_class(kind="DaskCluster", version="kubernetes.dask.org/v1", namespaced=True)
    selector = {FLOW_RUN_LABEL: flow_run_id}
    client = api if api is not None else kr8s.api()
    names = []
    resource: Any
    for resource in client.get(dask_cluster, namespace=namespace, label_selector=selector):
        resource.delete()
        names.append(resource.name)
        log.warning(message("cluster.leftover_deleted", current_language(), cluster=resource.name, flow_run_id=flow_run_id),
                    extra={"event": "cluster_deleted", "cluster": resource.name, "flow_run_id": flow_run_id})
    return names
