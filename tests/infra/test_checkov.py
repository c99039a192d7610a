"""checkov scans of terraform/, the applied k8s/ manifests, the Dask pods and the flow-run Job.

checkov finds no resources inside a DaskCluster, so its scheduler and worker pod
specs are written out as Pods. The Prefect base job template is rendered to the
Job the worker would submit. Both are scanned next to the k8s/ manifests, so
graph checks such as "every pod has a NetworkPolicy" find the policies.
Every skipped check must carry a reason in place (a #checkov:skip comment in
Terraform, a checkov.io/skipN annotation in Kubernetes).
"""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path
from typing import Any

import lmco2_infra_support as support
import pytest
import yaml

pytestmark = pytest.mark.slow

MIN_REASON_WORDS = 5


def _failed(report: dict[str, Any]) -> list[str]:
    return [f"{check['check_id']} {check['resource']} ({check['file_path']})" for check in report["failed_checks"]]


def _terraform_skip_ids() -> set[str]:
    ids = set()
    for path in support.TERRAFORM_DIR.rglob("*.tf"):
        ids.update(re.findall(r"#checkov:skip=(CKV2?_[A-Z0-9]+_\d+):", path.read_text()))
    return ids




@pytest.fixture(scope="module")
def kubernetes_scan_dir(tmp_path_factory: pytest.TempPathFactory, prefect_kubernetes_module: object) -> Path:
    """A directory with the applied manifests, the Dask pods and the rendered flow-run Job."""
    scan_dir = tmp_path_factory.mktemp("checkov-k8s")
    for path in support.K8S_DIR.glob("*.yaml"):
        if path.name not in {"daskcluster.yaml", "kustomization.yaml"}:
            shutil.copy(path, scan_dir / path.name)

    (cluster,) = support.load_yaml_documents(support.K8S_DIR / "daskcluster.yaml")
    (scan_dir / "dask-pods.yaml").write_text(yaml.safe_dump_all(support.daskcluster_pods(cluster)))

    template = json.loads((support.HELM_DIR / "prefect-base-job-template.json").read_text())
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("render"))
        patch.setenv("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
        for key, value in support.OFFLINE_ENV.items():
            patch.setenv(key, value)
        job = support.render_flow_run_job(template)
    (scan_dir / "flow-run-job.yaml").write_text(yaml.safe_dump(job))
    return scan_dir


@pytest.fixture(scope="module")
def reports(checkov_bin: Path, tool_env: dict[str, str], kubernetes_scan_dir: Path) -> dict[str, dict[str, Any]]:
    """checkov reports of terraform/ and of the Kubernetes scan directory, from one checkov run."""
    return support.run_checkov(checkov_bin, [support.TERRAFORM_DIR, kubernetes_scan_dir], ["terraform", "kubernetes"], tool_env)


@pytest.fixture(scope="module")
def terraform_report(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return reports["terraform"]


@pytest.fixture(scope="module")
def kubernetes_report(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return reports["kubernetes"]


@pytest.fixture(scope="module")
def broken_reports(checkov_bin: Path, tool_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """checkov reports of a deliberately insecure Terraform file and Pod, from one checkov run."""
    broken_dir = tmp_path_factory.mktemp("checkov-broken")
    (broken_dir / "main.tf").write_text(textwrap.dedent("""
        resource "google_storage_bucket" "main" {
          name                        = "lm-co2-insecure"
          location                    = "ASIA-NORTHEAST1"
          uniform_bucket_level_access = false
        }

        resource "google_container_cluster" "primary" {
          name               = "lm-co2-insecure"
          location           = "asia-northeast1-a"
          initial_node_count = 1
        }
    """))
    (cluster,) = support.load_yaml_documents(support.K8S_DIR / "daskcluster.yaml")
    (pod, _) = support.daskcluster_pods(cluster)
    container = pod["spec"]["containers"][0]
    container["securityContext"] = {"privileged": True}
    del container["resources"]
    (broken_dir / "pod.yaml").write_text(yaml.safe_dump(pod))
    return support.run_checkov(checkov_bin, [broken_dir], ["terraform", "kubernetes"], tool_env)


class TestTerraformScan:
    def test_no_failed_checks(self, terraform_report: dict[str, Any]) -> None:
        assert _failed(terraform_report) == []

    def test_resources_were_scanned(self, terraform_report: dict[str, Any]) -> None:
        scanned = {check["resource"] for check in terraform_report["passed_checks"]}
        assert any("google_container_cluster.primary" in resource for resource in scanned)
        assert any("google_storage_bucket.main" in resource for resource in scanned)
        assert len(terraform_report["passed_checks"]) >= 30

    def test_skips_are_the_documented_ones(self, terraform_report: dict[str, Any]) -> None:
        skipped = {check["check_id"] for check in terraform_report["skipped_checks"]}
        assert skipped == _terraform_skip_ids()

    def test_skips_carry_reasons(self, terraform_report: dict[str, Any]) -> None:
        for check in terraform_report["skipped_checks"]:
            reason = check["check_result"].get("suppress_comment", "")
            assert len(reason.split()) >= MIN_REASON_WORDS, f"{check['check_id']} on {check['resource']}: {reason!r}"


class TestKubernetesScan:
    def test_no_failed_checks(self, kubernetes_report: dict[str, Any]) -> None:
        assert _failed(kubernetes_report) == []

    def test_workloads_were_scanned(self, kubernetes_report: dict[str, Any]) -> None:
        scanned = {check["resource"] for check in kubernetes_report["passed_checks"]}
        assert "Pod.lm-co2.lm-co2-dask-scheduler" in scanned
        assert "Pod.lm-co2.lm-co2-dask-worker" in scanned
        assert any(resource.startswith("Job.lm-co2.") for resource in scanned)
        assert any(resource.startswith("Role.lm-co2.") for resource in scanned)

    def test_skips_carry_reasons(self, kubernetes_report: dict[str, Any]) -> None:
        assert kubernetes_report["skipped_checks"], "expected the documented image pull policy and digest skips"
        for check in kubernetes_report["skipped_checks"]:
            reason = check["check_result"].get("suppress_comment", "")
            assert len(reason.split()) >= MIN_REASON_WORDS, f"{check['check_id']} on {check['resource']}: {reason!r}"


class TestScansCanFail:
    def test_insecure_terraform_fails(self, broken_reports: dict[str, dict[str, Any]]) -> None:
        report = broken_reports["terraform"]
        failed_ids = {check["check_id"] for check in report["failed_checks"]}
        assert "CKV_GCP_29" in failed_ids  # uniform bucket-level access
        assert "CKV_GCP_25" in failed_ids  # private cluster
        assert report["returncode"] == 1

    def test_privileged_pod_fails(self, broken_reports: dict[str, dict[str, Any]]) -> None:
        report = broken_reports["kubernetes"]
        failed_ids = {check["check_id"] for check in report["failed_checks"]}
        assert "CKV_K8S_16" in failed_ids  # privileged container
        assert "CKV_K8S_11" in failed_ids  # CPU limits
