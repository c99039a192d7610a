"""Work pool and deployment checks for ``prefect.yaml``, usable from CI and from an operator shell.

``python -m flows.deployments check`` parses ``prefect.yaml`` and checks it against the flows;
``python -m flows.deployments create-pool`` creates the Kubernetes work pool on the Prefect server
of ``PREFECT_API_URL`` with the base job template of ``helm/prefect-base-job-template.json``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENT_FILE = PROJECT_ROOT / "prefect.yaml"
BASE_JOB_TEMPLATE = PROJECT_ROOT / "helm" / "prefect-base-job-template.json"
WORK_POOL_NAME = "lm-co2-k8s"
WORK_POOL_TYPE = "kubernetes"


def load_deployments(path: Path = DEPLOYMENT_FILE) -> list[dict[str, Any]]:
    """Return the deployments of ``prefect.yaml`` with YAML anchors resolved."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return list(data.get("deployments") or [])


def load_entrypoint(entrypoint: str) -> Any:
    """Import ``path/to/module.py:function`` relative to the project root and return the flow."""
    file_part, _, name = entrypoint.partition(":")
    module = ".".join(Path(file_part).with_suffix("").parts)
    return getattr(importlib.import_module(module), name)


def check_deployments(path: Path = DEPLOYMENT_FILE) -> list[str]:
    """Return the problems of ``prefect.yaml`` (empty if none).

    Checks: every entrypoint imports to a Prefect flow; default parameters name parameters of that
    flow; every schedule has a cron and a time zone; the work pool is ``lm-co2-k8s`` and its job
    variables exist in the Kubernetes worker's base job template.
    """
    from prefect.flows import Flow
    from prefect_kubernetes.worker import KubernetesWorker

    allowed_variables = set(KubernetesWorker.get_default_base_job_template()["variables"]["properties"])
    problems: list[str] = []
    for deployment in load_deployments(path):
        name = deployment.get("name", "?")
        try:
            target = load_entrypoint(deployment["entrypoint"])
        except (ImportError, AttributeError, KeyError) as error:
            problems.append(f"{name}: entrypoint {deployment.get('entrypoint')!r} does not import: {error}")
            continue
        if not isinstance(target, Flow):
            problems.append(f"{name}: entrypoint {deployment['entrypoint']!r} is not a Prefect flow")
            continue
        signature = inspect.signature(target.fn)
        for parameter in deployment.get("parameters") or {}:
            if parameter not in signature.parameters:
                problems.append(f"{name}: parameter {parameter!r} is not a parameter of {target.name}; expected one of {list(signature.parameters)}")
        for schedule in deployment.get("schedules") or []:
            if not schedule.get("cron") or not schedule.get("timezone"):
                problems.append(f"{name}: schedule {schedule} needs both cron and timezone")
        pool = deployment.get("work_pool") or {}
        if pool.get("name") != WORK_POOL_NAME:
            problems.append(f"{name}: work pool {pool.get('name')!r}, expected {WORK_POOL_NAME!r}")
        unknown = set(pool.get("job_variables") or {}) - allowed_variables
        if unknown:
            problems.append(f"{name}: job variables {sorted(unknown)} are not in the kubernetes base job template")
    return problems


def create_work_pool() -> None:
    """Create (or update) the Kubernetes work pool with the project's base job template."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists

    template = json.loads(BASE_JOB_TEMPLATE.read_text(encoding="utf-8"))
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=WORK_POOL_NAME, type=WORK_POOL_TYPE, base_job_template=template))
        except ObjectAlreadyExists:
            client.update_work_pool(WORK_POOL_NAME, WorkPoolUpdate(base_job_template=template))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.deployments")
    parser.add_argument("command", choices=("check", "create-pool"))
    args = parser.parse_args(argv)
    if args.command == "create-pool":
        create_work_pool()
        return 0
    problems = check_deployments()
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
