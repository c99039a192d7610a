"""Offline checks of helm/: chart values against their schemas, the Prefect base job template and install.sh.

Helm itself is not installed here. Values are merged over the chart defaults the
way Helm merges them and then validated with jsonschema. The prefect-worker
schema and defaults are vendored in helm/vendor/, and the
dask-kubernetes-operator chart comes from the dask-kubernetes wheel.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import lmco2_infra_support as support
import pytest
import yaml

WORKER_VALUES = support.HELM_DIR / "prefect-worker-values.yaml"
WORKER_SCHEMA = support.HELM_DIR / "vendor" / "prefect-worker" / "values.schema.json"
WORKER_DEFAULTS = support.HELM_DIR / "vendor" / "prefect-worker" / "values.yaml"
DASK_VALUES = support.HELM_DIR / "dask-operator-values.yaml"
DASK_SCHEMA = support.HELM_DIR / "dask-operator-values.schema.json"
BASE_JOB_TEMPLATE = support.HELM_DIR / "prefect-base-job-template.json"
VENDORED_COMMIT = "6236a062167b48ae1f5d3ba84e772555864fe1c2"
KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_./-]+):(\s|$)")


def _load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _errors(validator: Any, instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(instance)]


def _uncommented_keys(text: str) -> list[str]:
    """List mapping keys that have neither a comment line above them nor an inline comment."""
    missing = []
    previous = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        match = KEY_LINE.match(line)
        if match and not stripped.startswith("-"):
            has_inline_comment = " #" in line
            if not (previous.startswith("#") or has_inline_comment):
                missing.append(match["key"])
        previous = stripped
    return missing


def _unknown_chart_keys(overrides: Mapping[str, Any], defaults: Mapping[str, Any], path: str = "") -> list[str]:
    """List override keys that the chart's values.yaml does not define.

    A key whose chart default is an empty map (resources: {}, nodeSelector: {})
    is free-form, so nothing below it is checked.
    """
    unknown = []
    for key, value in overrides.items():
        dotted = f"{path}{key}"
        if key not in defaults:
            unknown.append(dotted)
        elif isinstance(value, Mapping) and isinstance(defaults[key], Mapping) and defaults[key]:
            unknown.extend(_unknown_chart_keys(value, defaults[key], f"{dotted}."))
    return unknown


@pytest.fixture(scope="module")
def worker_validator(jsonschema_module: Any) -> Any:
    # The chart schema declares "http://json-schema.org/schema#" without a draft;
    # pin Draft 7 instead of relying on jsonschema's deprecated fallback.
    return jsonschema_module.Draft7Validator(json.loads(WORKER_SCHEMA.read_text()))


@pytest.fixture(scope="module")
def merged_worker_values() -> dict[str, Any]:
    return support.deep_merge(_load_yaml(WORKER_DEFAULTS), _load_yaml(WORKER_VALUES))


@pytest.fixture(scope="module")
def dask_validator(jsonschema_module: Any) -> Any:
    schema = json.loads(DASK_SCHEMA.read_text())
    jsonschema_module.Draft202012Validator.check_schema(schema)
    return jsonschema_module.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def base_job_template() -> dict[str, Any]:
    return json.loads(BASE_JOB_TEMPLATE.read_text())


@pytest.fixture(scope="module")
def rendered_job(
    prefect_kubernetes_module: object, base_job_template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    # Prefect reads its home directory and may call git in the working directory;
    # keep both away from the repository.
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("render"))
        patch.setenv("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
        for key, value in support.OFFLINE_ENV.items():
            patch.setenv(key, value)
        return support.render_flow_run_job(base_job_template)


# --- prefect-worker chart -------------------------------------------------------------


class TestPrefectWorkerValues:
    def test_vendored_defaults_match_vendored_schema(self, worker_validator: Any) -> None:
        assert _errors(worker_validator, _load_yaml(WORKER_DEFAULTS)) == []

    def test_values_match_chart_schema(self, worker_validator: Any, merged_worker_values: dict[str, Any]) -> None:
        assert _errors(worker_validator, merged_worker_values) == []

    def test_broken_values_rejected(self, worker_validator: Any) -> None:
        broken = copy.deepcopy(_load_yaml(WORKER_VALUES))
        broken["worker"]["config"]["queryInterval"] = "ten"
        broken["worker"]["config"]["workpool"] = "lm-co2-k8s"
        broken["serviceAccount"]["create"] = "yes"
        errors = _errors(worker_validator, support.deep_merge(_load_yaml(WORKER_DEFAULTS), broken))
        assert any("'ten' is not of type 'integer'" in error for error in errors)
        assert any("'workpool' was unexpected" in error for error in errors)
        assert any("'yes' is not of type 'boolean'" in error for error in errors)

    def test_worker_polls_project_pool(self, merged_worker_values: dict[str, Any]) -> None:
        config = merged_worker_values["worker"]["config"]
        assert config["workPool"] == "lm-co2-k8s"
        assert config["type"] == "kubernetes"

    def test_worker_image_tag_pinned(self, merged_worker_values: dict[str, Any]) -> None:
        tag = merged_worker_values["worker"]["image"]["prefectTag"]
        assert re.match(r"^\d+\.\d+\.\d+-python3\.11-kubernetes$", tag), tag

    def test_worker_runs_on_system_pool(self, merged_worker_values: dict[str, Any]) -> None:
        assert merged_worker_values["worker"]["nodeSelector"] == {"lm-co2/node-pool": "system"}

    def test_pod_labels_do_not_repeat_chart_labels(self, merged_worker_values: dict[str, Any]) -> None:
        # The chart template writes these keys itself; a second copy would be a duplicate YAML key.
        chart_keys = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
                      "app.kubernetes.io/managed-by", "helm.sh/chart"}
        assert set(merged_worker_values["worker"]["podLabels"]) & chart_keys == set()

    def test_every_key_commented(self) -> None:
        assert _uncommented_keys(WORKER_VALUES.read_text()) == []

    def test_readme_names_vendored_source(self) -> None:
        readme = (support.HELM_DIR / "README.md").read_text()
        assert "PrefectHQ/prefect-helm" in readme
        assert VENDORED_COMMIT in readme


# --- dask-kubernetes-operator chart ---------------------------------------------------------


class TestDaskOperatorValues:
    def test_values_match_own_schema(self, dask_validator: Any) -> None:
        assert _errors(dask_validator, _load_yaml(DASK_VALUES)) == []

    def test_keys_exist_in_chart(self, dask_chart_dir: Path) -> None:
        chart_defaults = _load_yaml(dask_chart_dir / "values.yaml")
        assert _unknown_chart_keys(_load_yaml(DASK_VALUES), chart_defaults) == []

    def test_broken_values_rejected(self, dask_validator: Any, dask_chart_dir: Path) -> None:
        broken = copy.deepcopy(_load_yaml(DASK_VALUES))
        broken["image"]["tag"] = "latest"
        broken["kopfArg"] = ["--namespace=lm-co2"]
        broken["resources"]["requests"]["cpu"] = 0.1
        errors = _errors(dask_validator, broken)
        assert any("'latest' does not match" in error for error in errors)
        assert any("'kopfArg' was unexpected" in error for error in errors)
        assert any("0.1 is not of type 'string'" in error for error in errors)
        assert _unknown_chart_keys(broken, _load_yaml(dask_chart_dir / "values.yaml")) == ["kopfArg"]

    def test_operator_watches_project_namespace(self) -> None:
        assert _load_yaml(DASK_VALUES)["kopfArgs"] == [f"--namespace={support.NAMESPACE}"]

    def test_operator_version_matches_installed_package(self, dask_chart_dir: Path) -> None:
        from importlib.metadata import version

        installed = version("dask-kubernetes")
        assert _load_yaml(DASK_VALUES)["image"]["tag"] == installed
        assert f'DASK_OPERATOR_CHART_VERSION:-{installed}' in (support.HELM_DIR / "install.sh").read_text()

    def test_every_key_commented(self) -> None:
        assert _uncommented_keys(DASK_VALUES.read_text()) == []

    def test_uncommented_key_reported(self) -> None:
        assert _uncommented_keys("# A comment.\nimage:\n  tag: x\n") == ["tag"]


# --- Prefect base job template ------------------------------------------------------------


class TestBaseJobTemplate:
    def test_accepted_by_prefect_server_validation(self, prefect_kubernetes_module: object, base_job_template: dict[str, Any]) -> None:
        support.validate_work_pool_template(base_job_template)

    def test_undeclared_placeholder_rejected(self, prefect_kubernetes_module: object, base_job_template: dict[str, Any]) -> None:
        import pydantic

        broken = copy.deepcopy(base_job_template)
        broken["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["priorityClassName"] = "{{ priority_class }}"
        with pytest.raises(pydantic.ValidationError, match="priority_class"):
            support.validate_work_pool_template(broken)

    def test_rendered_job_validates(self, kubernetes_validate_module: Any, rendered_job: dict[str, Any]) -> None:
        kubernetes_validate_module.validate(rendered_job, support.KUBERNETES_VERSION, strict=True)

    def test_rendered_job_runs_as_flow_runner(self, rendered_job: dict[str, Any]) -> None:
        pod = rendered_job["spec"]["template"]["spec"]
        assert rendered_job["metadata"]["namespace"] == support.NAMESPACE
        assert pod["serviceAccountName"] == "lm-co2-flow-runner"
        assert pod["nodeSelector"] == {"lm-co2/node-pool": "system"}
        assert pod["securityContext"]["runAsUser"] == 10001

    def test_rendered_job_selects_gke_profile(self, rendered_job: dict[str, Any]) -> None:
        env = {item["name"]: item.get("value") for item in rendered_job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["LMCO2_PROFILE"] == "gke"
        assert env["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] == "false"
        # The log-based metric in terraform/monitoring.tf reads JSON log lines.
        assert env["LMCO2_LOGGING__FORMAT"] == "json"

    def test_rendered_job_has_resources(self, rendered_job: dict[str, Any]) -> None:
        resources = rendered_job["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys()
        assert {"cpu", "memory"} <= resources["limits"].keys()


class TestRenderJobTemplate:
    """helm/render_job_template.py fills the image and the Terraform flow environment in."""

    FLOW_ENV: ClassVar[dict[str, str]] = {
        "LMCO2_STORAGE__RAW": "gs://ours/raw/{yyyymmdd}/",
        "LMCO2_TRANSFER__JOB_NAME": "transferJobs/123",
    }
    IMAGE: ClassVar[str] = "asia-northeast1-docker.pkg.dev/my-project/lm-co2/lm-co2:0.2.0"

    def _run(self, tool_env: dict[str, str], tmp_path: Path, image: str) -> subprocess.CompletedProcess[str]:
        flow_env = tmp_path / "flow-environment.json"
        flow_env.write_text(json.dumps(self.FLOW_ENV))
        return subprocess.run(
            ["python3", str(support.HELM_DIR / "render_job_template.py"), "--image", image, "--flow-env", str(flow_env)],
            capture_output=True, text=True, env=tool_env, timeout=60, check=False,
        )

    def test_rendered_template_valid(self, prefect_kubernetes_module: object, tool_env: dict[str, str], tmp_path: Path) -> None:
        completed = self._run(tool_env, tmp_path, self.IMAGE)
        assert completed.returncode == 0, completed.stderr
        template = json.loads(completed.stdout)
        support.validate_work_pool_template(template)
        variables = template["variables"]["properties"]
        assert variables["image"]["default"] == self.IMAGE
        env = variables["env"]["default"]
        assert env["LMCO2_CLUSTER__IMAGE"] == self.IMAGE
        assert env["LMCO2_TRANSFER__JOB_NAME"] == "transferJobs/123"
        assert env["LMCO2_PROFILE"] == "gke"

    def test_moving_tag_rejected(self, tool_env: dict[str, str], tmp_path: Path) -> None:
        completed = self._run(tool_env, tmp_path, "asia-northeast1-docker.pkg.dev/my-project/lm-co2/lm-co2:latest")
        assert completed.returncode == 2
        assert "is not a pinned image reference" in completed.stderr


# --- install.sh -----------------------------------------------------------------------------


class TestInstallScript:
    def test_shell_syntax(self, tool_env: dict[str, str]) -> None:
        completed = subprocess.run(
            ["bash", "-n", str(support.HELM_DIR / "install.sh")], capture_output=True, text=True, env=tool_env, timeout=30, check=False
        )
        assert completed.returncode == 0, completed.stderr

    def test_refers_to_existing_files(self) -> None:
        script = (support.HELM_DIR / "install.sh").read_text()
        for name in set(re.findall(r'\$\{script_dir\}/([\w.-]+)', script)):
            assert (support.HELM_DIR / name).is_file(), name

    def test_stops_without_required_settings(self, tool_env: dict[str, str], tmp_path: Path) -> None:
        # Fake helm and kubectl so the script reaches its environment checks.
        for tool in ("helm", "kubectl"):
            fake = tmp_path / tool
            fake.write_text("#!/bin/sh\nexit 0\n")
            fake.chmod(0o755)
        env = {key: value for key, value in tool_env.items() if not key.startswith("PREFECT_")}
        env["PATH"] = f"{tmp_path}:/usr/bin:/bin"
        completed = subprocess.run(
            ["bash", str(support.HELM_DIR / "install.sh")], capture_output=True, text=True, env=env, timeout=30, check=False
        )
        assert completed.returncode == 1
        assert "PREFECT_ACCOUNT_ID is not set" in completed.stderr
