"""Shared helpers for the offline checks of terraform/, helm/, k8s/ and the Dockerfile.

Everything here works without network access: tools are looked up locally,
subprocesses get an environment that disables update checks and telemetry, and
the Helm chart schemas come from the dask-kubernetes wheel or helm/vendor/.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO_ROOT / "terraform"
K8S_DIR = REPO_ROOT / "k8s"
HELM_DIR = REPO_ROOT / "helm"

# Kubernetes minor version the manifests are validated against (kubernetes-validate
# bundles schemas for 1.25 to 1.37); GKE's REGULAR channel runs 1.33 or later.
KUBERNETES_VERSION = "1.33.0"

NAMESPACE = "lm-co2"

# Environment for every tool started by the tests: no update checks, no
# telemetry, no platform downloads.
OFFLINE_ENV = {
    "CHECKPOINT_DISABLE": "1",
    "TF_IN_AUTOMATION": "1",
    "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
    "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
    "BC_SKIP_MAPPING": "TRUE",
    "CKV_GITHUB_CONFIG_FETCH_DATA": "false",
    "CKV_GITLAB_CONFIG_FETCH_DATA": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_GCE_CHECK": "True",
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
}


def offline_env(tmp_dir: Path) -> dict[str, str]:
    """Return os.environ plus OFFLINE_ENV and an empty Terraform CLI config in tmp_dir."""
    cli_config = tmp_dir / "terraformrc"
    cli_config.write_text("disable_checkpoint = true\n")
    return {**os.environ, **OFFLINE_ENV, "TF_CLI_CONFIG_FILE": str(cli_config)}


# --- tool lookup ---------------------------------------------------------------


def find_tool(name: str) -> Path | None:
    """Find a command in the repository's venvs first, then on PATH."""
    candidates = [
        REPO_ROOT / ".venv-infra" / "bin" / name,
        REPO_ROOT / ".venv" / "bin" / name,
        Path(sys.executable).parent / name,
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def dask_operator_chart_dir() -> Path | None:
    """Return the dask-kubernetes-operator Helm chart shipped in the installed wheel."""
    try:
        import dask_kubernetes
    except ImportError:
        return None
    chart = (
        Path(dask_kubernetes.__file__).parent
        / "operator"
        / "deployment"
        / "helm"
        / "dask-kubernetes-operator"
    )
    return chart if chart.is_dir() else None


# --- HCL --------------------------------------------------------------------------


def unquote(value: Any) -> Any:
    """Return the text of an HCL string as python-hcl2 parsed it.

    python-hcl2 keeps the quotes around string literals and block labels, and
    keeps heredocs (<<-EOT ... EOT) with their markers; both are removed here.
    """
    if not isinstance(value, str):
        return value
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if value.startswith("<<"):
        # python-hcl2 8.x returns heredoc newlines as the two characters "\\n".
        lines = value.replace("\\n", "\n").splitlines()
        return "\n".join(line.strip() for line in lines[1:-1]).strip()
    return value


def load_hcl(path: Path) -> dict[str, Any]:
    """Parse one .tf file with python-hcl2."""
    import hcl2

    with path.open() as handle:
        return hcl2.load(handle)


def iter_blocks(document: Mapping[str, Any], block_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (label, body) for single-label blocks such as variable or output."""
    for entry in document.get(block_type, []):
        for label, body in entry.items():
            yield unquote(label), body


def iter_resources(
    document: Mapping[str, Any], block_type: str = "resource"
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield (type, name, body) for resource or data blocks."""
    for entry in document.get(block_type, []):
        for resource_type, named in entry.items():
            for name, body in named.items():
                yield unquote(resource_type), unquote(name), body


def skip_comments(body: Mapping[str, Any]) -> list[str]:
    """Return the `checkov:skip=` comments python-hcl2 attached to a block."""
    return [
        comment["value"].strip()
        for comment in body.get("__comments__", [])
        if comment.get("value", "").strip().startswith("checkov:skip=")
    ]


# --- YAML and JSON ----------------------------------------------------------------


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """Load every non-empty document of a YAML file."""
    with path.open() as handle:
        return [document for document in yaml.safe_load_all(handle) if document]


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge override into base the way Helm merges values files: maps recursively, everything else replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def forbid_unknown_properties(schema: Any) -> Any:
    """Return a copy of an OpenAPI schema in which objects reject undeclared keys.

    The Kubernetes API server silently prunes fields that a structural CRD schema
    does not declare, so a misspelt key in a DaskCluster would be dropped without
    an error. Plain jsonschema accepts such keys as well; this copy rejects them.
    Objects that declare additionalProperties or
    x-kubernetes-preserve-unknown-fields keep their behaviour.
    """
    schema = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            is_closed_object = (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            )
            if is_closed_object:
                node["additionalProperties"] = False
            for child in node.values():
                visit(child)
        elif isinstance(node, list):
            for child in node:
                visit(child)

    visit(schema)
    return schema


def daskcluster_schema() -> dict[str, Any] | None:
    """Return the strict DaskCluster schema from the CRD in the dask-kubernetes wheel."""
    chart = dask_operator_chart_dir()
    if chart is None:
        return None
    crd = yaml.safe_load((chart / "crds" / "daskcluster.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    # Every Kubernetes object carries these top-level fields; the CRD schema
    # leaves them to the API server.
    schema["properties"].update(
        {
            "apiVersion": {"type": "string", "enum": ["kubernetes.dask.org/v1"]},
            "kind": {"type": "string", "enum": ["DaskCluster"]},
            "metadata": {"type": "object", "required": ["name"]},
        }
    )
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
    return forbid_unknown_properties(schema)


def daskcluster_pods(cluster: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Turn the scheduler and worker pod specs of a DaskCluster into Pod manifests.

    checkov and kubernetes-validate know nothing about the DaskCluster kind, so
    the pod specs inside it are checked as the Pods the operator will create.
    """
    pods = []
    for role in ("scheduler", "worker"):
        part = cluster["spec"][role]
        metadata = part.get("metadata", {})
        pods.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{cluster['metadata']['name']}-{role}",
                    "namespace": NAMESPACE,
                    "labels": dict(metadata.get("labels", {})),
                    "annotations": dict(metadata.get("annotations", {})),
                },
                "spec": copy.deepcopy(part["spec"]),
            }
        )
    return pods


# --- Prefect base job template ---------------------------------------------------


def validate_work_pool_template(template: Mapping[str, Any]) -> None:
    """Run the Prefect server's own validation of a work pool base job template.

    Raises pydantic.ValidationError, for example when the job configuration uses
    a placeholder that the variables schema does not declare.
    """
    from prefect.server.schemas.actions import WorkPoolCreate

    WorkPoolCreate(name="lm-co2-k8s", type="kubernetes", base_job_template=dict(template))


def render_flow_run_job(template: Mapping[str, Any]) -> dict[str, Any]:
    """Render the Kubernetes Job that the Prefect worker would submit for a flow run.

    Uses the same steps as prefect-kubernetes: fill the job configuration with
    the variables' defaults, build KubernetesWorkerJobConfiguration and prepare it
    for a flow run. No Prefect API is contacted.
    """
    from prefect.client.schemas.objects import FlowRun
    from prefect.utilities.templating import apply_values
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    defaults = KubernetesWorkerJobConfiguration._get_base_config_defaults(
        template["variables"]["properties"]
    )
    configuration = KubernetesWorkerJobConfiguration(
        **apply_values(copy.deepcopy(template["job_configuration"]), defaults)
    )
    configuration.prepare_for_flow_run(FlowRun(flow_id=uuid.uuid4(), name="render-check"))
    return json.loads(json.dumps(configuration.job_manifest))


# --- checkov --------------------------------------------------------------------


def run_checkov(
    checkov: Path, directories: list[Path], frameworks: list[str], env: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """Run checkov once over several directories and frameworks; return one report per framework.

    One process for everything saves checkov's start-up time, which dominates on
    small inputs. Each report has the keys passed_checks, failed_checks,
    skipped_checks and returncode (checkov's exit code for the whole run). The
    check lists are gathered over all directories, and a framework without any
    resource gets empty lists.
    """
    command = [str(checkov)]
    for directory in directories:
        command += ["--directory", str(directory)]
    command += ["--framework", *frameworks, "--skip-download", "--output", "json"]
    completed = subprocess.run(command, capture_output=True, text=True, env=dict(env), timeout=300, check=False)
    if completed.returncode not in (0, 1):
        raise RuntimeError(f"checkov failed with exit code {completed.returncode}: {completed.stderr[-2000:]}")
    entries = _decode_json_documents(completed.stdout)
    reports: dict[str, dict[str, Any]] = {}
    for framework in frameworks:
        # One entry per directory that had resources of the framework; none for a
        # framework with nothing to scan (checkov then prints a bare summary).
        found = [entry for entry in entries if entry.get("check_type") == framework]
        report: dict[str, Any] = {key: _unique_checks(entry["results"][key] for entry in found) for key in CHECK_LISTS}
        report["returncode"] = completed.returncode
        reports[framework] = report
    return reports


CHECK_LISTS = ("passed_checks", "failed_checks", "skipped_checks")


def _unique_checks(check_lists: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Concatenate check lists, keeping one copy of each (check, resource, file) result.

    With several --directory options checkov repeats a framework's results in the
    document of each directory.
    """
    seen: set[tuple[str, str, str]] = set()
    unique = []
    for checks in check_lists:
        for check in checks:
            key = (check["check_id"], check["resource"], check.get("file_path", ""))
            if key not in seen:
                seen.add(key)
                unique.append(check)
    return unique


def _decode_json_documents(text: str) -> list[dict[str, Any]]:
    """Decode checkov's output: one JSON document per directory, each an object or a list of objects."""
    decoder = json.JSONDecoder()
    entries: list[dict[str, Any]] = []
    position = 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        document, position = decoder.raw_decode(text, position)
        entries.extend(document if isinstance(document, list) else [document])
    return entries
