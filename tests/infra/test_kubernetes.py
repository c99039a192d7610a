"""Offline checks of k8s/: schema validation, labels, RBAC, network policy and the DaskCluster template.

kubernetes-validate has schemas for built-in kinds only and passes a DaskCluster
with a warning. The template is therefore validated against the CRD schema
shipped in the dask-kubernetes wheel, and its pod specs again as plain Pods.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import lmco2_infra_support as support
import pytest
import yaml

DASKCLUSTER_PATH = support.K8S_DIR / "daskcluster.yaml"
APPLIED_FILES = sorted(
    path for path in support.K8S_DIR.glob("*.yaml") if path.name not in {"daskcluster.yaml", "kustomization.yaml"}
)
REQUIRED_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/component")
NAMESPACED_KINDS = {"ServiceAccount", "Role", "RoleBinding", "NetworkPolicy", "ResourceQuota", "LimitRange"}


def _find_label_problems(documents: list[dict[str, Any]]) -> list[str]:
    """List objects without the shared app.kubernetes.io labels or outside the lm-co2 namespace."""
    problems = []
    for document in documents:
        name = f"{document.get('kind')}/{document.get('metadata', {}).get('name')}"
        labels = document.get("metadata", {}).get("labels", {})
        for key in REQUIRED_LABELS:
            if not labels.get(key):
                problems.append(f"{name} has no {key} label")
        if labels.get("app.kubernetes.io/part-of") not in (None, "lm-co2"):
            problems.append(f"{name} has app.kubernetes.io/part-of={labels['app.kubernetes.io/part-of']!r}, expected 'lm-co2'")
        if document.get("kind") in NAMESPACED_KINDS and document["metadata"].get("namespace") != support.NAMESPACE:
            problems.append(f"{name} is not in the {support.NAMESPACE} namespace")
    return problems


def _schema_errors(validator: Any, instance: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(instance)]


def _terraform_locals(name: str) -> dict[str, Any]:
    document = support.load_hcl(support.TERRAFORM_DIR / name)
    return {key: support.unquote(value) for block in document.get("locals", []) for key, value in block.items()}


@pytest.fixture(scope="module")
def applied_documents() -> list[dict[str, Any]]:
    return [document for path in APPLIED_FILES for document in support.load_yaml_documents(path)]


@pytest.fixture(scope="module")
def daskcluster() -> dict[str, Any]:
    (document,) = support.load_yaml_documents(DASKCLUSTER_PATH)
    return document


@pytest.fixture(scope="module")
def daskcluster_validator(jsonschema_module: Any, dask_chart_dir: Path) -> Any:
    schema = support.daskcluster_schema()
    assert schema is not None
    return jsonschema_module.Draft7Validator(schema)


def _kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [document for document in documents if document["kind"] == kind]


# --- built-in kinds ------------------------------------------------------------------


class TestManifestSchemas:
    @pytest.mark.parametrize("path", APPLIED_FILES, ids=lambda path: path.name)
    def test_manifest_validates(self, kubernetes_validate_module: Any, path: Path) -> None:
        for document in support.load_yaml_documents(path):
            kubernetes_validate_module.validate(document, support.KUBERNETES_VERSION, strict=True)

    def test_kustomization_renders_every_manifest(
        self, kubectl_bin: Path, tool_env: dict[str, str], applied_documents: list[dict[str, Any]]
    ) -> None:
        completed = subprocess.run(
            [str(kubectl_bin), "kustomize", str(support.K8S_DIR)],
            capture_output=True,
            text=True,
            env=tool_env,
            timeout=60,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        rendered = [document for document in yaml.safe_load_all(completed.stdout) if document]
        rendered_names = sorted((d["kind"], d["metadata"]["name"]) for d in rendered)
        expected_names = sorted((d["kind"], d["metadata"]["name"]) for d in applied_documents)
        assert rendered_names == expected_names

    def test_invalid_manifest_rejected(self, kubernetes_validate_module: Any) -> None:
        (policy,) = [d for d in support.load_yaml_documents(support.K8S_DIR / "networkpolicy.yaml") if d["metadata"]["name"] == "allow-https-egress"]
        broken = copy.deepcopy(policy)
        broken["spec"]["podSelectr"] = {}
        with pytest.raises(kubernetes_validate_module.ValidationError):
            kubernetes_validate_module.validate(broken, support.KUBERNETES_VERSION, strict=True)


class TestLabelsAndNamespaces:
    def test_shared_labels_present(self, applied_documents: list[dict[str, Any]], daskcluster: dict[str, Any]) -> None:
        assert _find_label_problems(applied_documents + [daskcluster]) == []

    def test_missing_label_reported(self, applied_documents: list[dict[str, Any]]) -> None:
        broken = copy.deepcopy(applied_documents[1])
        del broken["metadata"]["labels"]["app.kubernetes.io/component"]
        broken["metadata"]["namespace"] = "default"
        problems = _find_label_problems([broken])
        assert any("no app.kubernetes.io/component label" in p for p in problems)
        assert any("not in the lm-co2 namespace" in p for p in problems)

    def test_namespace_matches_terraform_default(self, applied_documents: list[dict[str, Any]], hcl2_module: object) -> None:
        (namespace,) = _kind(applied_documents, "Namespace")
        variables = dict(support.iter_blocks(support.load_hcl(support.TERRAFORM_DIR / "variables.tf"), "variable"))
        assert namespace["metadata"]["name"] == support.unquote(variables["kubernetes_namespace"]["default"])


class TestAccessControl:
    def test_role_grants_exactly_dask_cluster_management(self, applied_documents: list[dict[str, Any]]) -> None:
        (role,) = _kind(applied_documents, "Role")
        rules = {(tuple(rule["apiGroups"]), tuple(sorted(rule["resources"]))): sorted(rule["verbs"]) for rule in role["rules"]}
        assert rules == {
            (("kubernetes.dask.org",), ("daskautoscalers", "daskclusters", "daskjobs", "daskworkergroups", "daskworkergroups/scale")):
                sorted(["get", "list", "watch", "patch", "create", "delete"]),
            (("",), ("pods", "pods/status")): ["get", "list", "watch"],
            (("",), ("services",)): ["get", "list", "watch"],
        }

    def test_role_bound_to_flow_runner(self, applied_documents: list[dict[str, Any]]) -> None:
        (binding,) = _kind(applied_documents, "RoleBinding")
        (role,) = _kind(applied_documents, "Role")
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "lm-co2-flow-runner", "namespace": "lm-co2"}]

    def test_service_accounts_match_terraform(self, applied_documents: list[dict[str, Any]], hcl2_module: object) -> None:
        accounts = {sa["metadata"]["name"]: sa for sa in _kind(applied_documents, "ServiceAccount")}
        variables = dict(support.iter_blocks(support.load_hcl(support.TERRAFORM_DIR / "variables.tf"), "variable"))
        type_text = variables["kubernetes_service_accounts"]["type"]
        for name in re.findall(r'optional\(string, "([^"]+)"\)', type_text):
            assert name in accounts, f"Terraform binds {name} but k8s/serviceaccounts.yaml does not define it"
        annotation = "iam.gke.io/gcp-service-account"
        assert accounts["lm-co2-flow-runner"]["metadata"]["annotations"][annotation] == "lm-co2-flow@PROJECT_ID.iam.gserviceaccount.com"
        assert accounts["lm-co2-dask"]["metadata"]["annotations"][annotation] == "lm-co2-dask@PROJECT_ID.iam.gserviceaccount.com"
        assert accounts["lm-co2-dask"]["automountServiceAccountToken"] is False


class TestNetworkAndQuota:
    def test_default_deny_covers_all_pods(self, applied_documents: list[dict[str, Any]]) -> None:
        policies = {p["metadata"]["name"]: p for p in _kind(applied_documents, "NetworkPolicy")}
        deny = policies["default-deny-all"]["spec"]
        assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}

    def test_public_egress_limited_to_https(self, applied_documents: list[dict[str, Any]]) -> None:
        for policy in _kind(applied_documents, "NetworkPolicy"):
            for rule in policy["spec"].get("egress", []):
                opens_internet = any(peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" for peer in rule.get("to", []))
                if opens_internet:
                    assert [port["port"] for port in rule["ports"]] == [443], policy["metadata"]["name"]

    def test_control_plane_range_matches_terraform(self, applied_documents: list[dict[str, Any]], hcl2_module: object) -> None:
        variables = dict(support.iter_blocks(support.load_hcl(support.TERRAFORM_DIR / "variables.tf"), "variable"))
        master_cidr = re.search(r'master_ipv4_cidr_block\s*=\s*optional\(string, "([^"]+)"\)', variables["cluster"]["type"])
        assert master_cidr is not None
        cidrs = [
            peer["ipBlock"]["cidr"]
            for policy in _kind(applied_documents, "NetworkPolicy")
            for rule in policy["spec"].get("egress", [])
            for peer in rule.get("to", [])
            if "ipBlock" in peer
        ]
        assert master_cidr.group(1) in cidrs

    def test_quota_limits_dask_clusters(self, applied_documents: list[dict[str, Any]]) -> None:
        (quota,) = _kind(applied_documents, "ResourceQuota")
        assert int(quota["spec"]["hard"]["count/daskclusters.kubernetes.dask.org"]) >= 1


# --- DaskCluster template -----------------------------------------------------------------


class TestDaskClusterTemplate:
    def test_matches_crd_schema(self, daskcluster_validator: Any, daskcluster: dict[str, Any]) -> None:
        assert _schema_errors(daskcluster_validator, daskcluster) == []

    def test_broken_template_rejected(self, daskcluster_validator: Any, daskcluster: dict[str, Any]) -> None:
        broken = copy.deepcopy(daskcluster)
        broken["spec"]["worker"]["spec"]["nodeSelectr"] = {"lm-co2/node-pool": "dask-spot"}
        broken["spec"]["worker"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = 3
        del broken["spec"]["scheduler"]["service"]
        errors = _schema_errors(daskcluster_validator, broken)
        assert any("nodeSelectr" in error for error in errors)
        assert any("3 is not of type 'string'" in error for error in errors)
        assert any("'service' is a required property" in error for error in errors)

    @pytest.mark.parametrize("role", ["scheduler", "worker"])
    def test_pod_spec_validates_as_pod(self, kubernetes_validate_module: Any, daskcluster: dict[str, Any], role: str) -> None:
        pods = {pod["metadata"]["name"].rsplit("-", 1)[-1]: pod for pod in support.daskcluster_pods(daskcluster)}
        kubernetes_validate_module.validate(pods[role], support.KUBERNETES_VERSION, strict=True)

    def test_image_pinned_and_shared(self, daskcluster: dict[str, Any]) -> None:
        images = {daskcluster["spec"][role]["spec"]["containers"][0]["image"] for role in ("scheduler", "worker")}
        assert images == {"REGION-docker.pkg.dev/PROJECT/lm-co2/lm-co2:0.1.0"}

    def test_service_selects_own_scheduler(self, daskcluster: dict[str, Any]) -> None:
        selector = daskcluster["spec"]["scheduler"]["service"]["selector"]
        assert selector == {"dask.org/cluster-name": daskcluster["metadata"]["name"], "dask.org/component": "scheduler"}

    def test_idle_timeout_set(self, daskcluster: dict[str, Any]) -> None:
        assert daskcluster["spec"]["idleTimeout"] > 0

    @pytest.mark.parametrize("role", ["scheduler", "worker"])
    def test_pod_hardening(self, daskcluster: dict[str, Any], role: str) -> None:
        spec = daskcluster["spec"][role]["spec"]
        container = spec["containers"][0]
        assert spec["serviceAccountName"] == "lm-co2-dask"
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] >= 10000
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert {"name": "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "value": "false"} in container["env"]

    @pytest.mark.parametrize("role", ["scheduler", "worker"])
    def test_resources_guaranteed(self, daskcluster: dict[str, Any], role: str) -> None:
        resources = daskcluster["spec"][role]["spec"]["containers"][0]["resources"]
        for key in ("cpu", "memory"):
            assert resources["requests"][key] == resources["limits"][key]

    def test_scheduler_and_worker_sized_separately(self, daskcluster: dict[str, Any]) -> None:
        scheduler = daskcluster["spec"]["scheduler"]["spec"]["containers"][0]["resources"]
        worker = daskcluster["spec"]["worker"]["spec"]["containers"][0]["resources"]
        assert scheduler != worker

    def test_worker_preloads_the_task_module(self, daskcluster: dict[str, Any]) -> None:
        from compute.cluster import WORKER_PRELOAD

        args = daskcluster["spec"]["worker"]["spec"]["containers"][0]["args"]
        assert args[args.index("--preload") + 1] == WORKER_PRELOAD

    def test_worker_threads_match_cpu(self, daskcluster: dict[str, Any]) -> None:
        container = daskcluster["spec"]["worker"]["spec"]["containers"][0]
        args = container["args"]
        assert args[args.index("--nthreads") + 1] == container["resources"]["requests"]["cpu"]

    def test_placement_matches_terraform_node_pools(self, daskcluster: dict[str, Any], hcl2_module: object) -> None:
        names = _terraform_locals("gke.tf")
        label_key, taint_key = names["node_pool_label_key"], names["dask_spot_taint_key"]
        gke_text = (support.TERRAFORM_DIR / "gke.tf").read_text()
        assert '(local.node_pool_label_key) = "system"' in gke_text
        assert '(local.node_pool_label_key) = "dask-spot"' in gke_text

        scheduler = daskcluster["spec"]["scheduler"]["spec"]
        worker = daskcluster["spec"]["worker"]["spec"]
        assert scheduler["nodeSelector"] == {label_key: "system"}
        assert "tolerations" not in scheduler
        assert worker["nodeSelector"] == {label_key: "dask-spot", "cloud.google.com/gke-spot": "true"}
        assert worker["tolerations"] == [{"key": taint_key, "operator": "Equal", "value": "true", "effect": "NoSchedule"}]

    @pytest.mark.parametrize("role", ["scheduler", "worker"])
    def test_command_options_exist_in_installed_dask(self, daskcluster: dict[str, Any], role: str, tool_env: dict[str, str]) -> None:
        dask_cli = support.find_tool("dask")
        if dask_cli is None:
            pytest.skip("the dask command is not installed, so the container arguments cannot be checked")
        args = daskcluster["spec"][role]["spec"]["containers"][0]["args"]
        assert args[:2] == ["dask", role]
        completed = subprocess.run([str(dask_cli), role, "--help"], capture_output=True, text=True, env=tool_env, timeout=120, check=False)
        assert completed.returncode == 0, completed.stderr
        for option in (arg for arg in args if arg.startswith("--")):
            assert re.search(rf"(^|\s){re.escape(option)}[\s/]", completed.stdout), f"dask {role} has no option {option}"
