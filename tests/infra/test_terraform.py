"""Offline checks of terraform/: formatting, structure and the promises made in its comments.

`terraform validate` needs the Google provider plugin, which cannot be downloaded
here, so the structure is checked on the python-hcl2 parse instead.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lmco2_infra_support as support
import pytest

TF_FILES = sorted(support.TERRAFORM_DIR.rglob("*.tf"))
SECRET_OUTPUT_NAME = re.compile(r"(endpoint|certificate|password|token|private_key|secret_value|access_key)")
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9_]*$")
CHECKOV_SKIP = re.compile(r"^checkov:skip=(CKV2?_[A-Z0-9]+_\d+):(?P<reason>.+)$")


# --- checkers shared by the positive and the negative tests -----------------------


def _find_variable_problems(documents: Mapping[Path, Mapping[str, Any]]) -> list[str]:
    """List variables without a type, without a sentence as description, or outside variables.tf."""
    problems = []
    for path, document in documents.items():
        for name, body in support.iter_blocks(document, "variable"):
            if path.name != "variables.tf":
                problems.append(f"{path.name}: variable {name} is declared outside variables.tf")
            if "type" not in body:
                problems.append(f"{path.name}: variable {name} has no type")
            description = str(support.unquote(body.get("description", ""))).strip()
            if not description:
                problems.append(f"{path.name}: variable {name} has no description")
            elif not description.endswith("."):
                problems.append(f"{path.name}: description of variable {name} is not a full sentence: {description!r}")
            if body.get("type") in ("bool", "${bool}") and not name.startswith(("enable_", "create_")):
                problems.append(f"{path.name}: bool variable {name} should be named enable_* or create_*")
    return problems


def _find_output_problems(documents: Mapping[Path, Mapping[str, Any]]) -> list[str]:
    """List outputs without a description, outside outputs.tf, or exposing secrets without sensitive = true."""
    problems = []
    for path, document in documents.items():
        for name, body in support.iter_blocks(document, "output"):
            if path.name != "outputs.tf":
                problems.append(f"{path.name}: output {name} is declared outside outputs.tf")
            if not str(support.unquote(body.get("description", ""))).strip():
                problems.append(f"{path.name}: output {name} has no description")
            exposes_secret = SECRET_OUTPUT_NAME.search(name) or "google_secret_manager_secret_version" in str(
                body.get("value", "")
            )
            if exposes_secret and body.get("sensitive") is not True:
                problems.append(f"{path.name}: output {name} exposes secret material but is not sensitive")
    return problems


def _find_version_problems(documents: Mapping[Path, Mapping[str, Any]]) -> list[str]:
    """List Terraform and provider version constraints that lack a lower or an upper bound."""
    problems = []
    found_any = False
    for path, document in documents.items():
        for terraform_block in document.get("terraform", []):
            found_any = True
            required_version = str(support.unquote(terraform_block.get("required_version", "")))
            if not (">=" in required_version and "<" in required_version.replace("<=", "<")):
                problems.append(f"{path.name}: required_version {required_version!r} is not bounded on both sides")
            for providers in terraform_block.get("required_providers", []):
                for provider, spec in providers.items():
                    if provider.startswith("__"):
                        continue
                    constraint = str(support.unquote(spec.get("version", "")))
                    if ">=" not in constraint or not re.search(r"<\s*\d", constraint):
                        problems.append(f"{path.name}: provider {provider} version {constraint!r} is not bounded on both sides")
    if not found_any:
        problems.append("no terraform block with required_providers found")
    return problems


def _find_transfer_job_problems(documents: Mapping[Path, Mapping[str, Any]]) -> list[str]:
    """List deviations of the transfer job from the design: no schedule, S3 input to raw/, no inline AWS keys."""
    jobs = [
        (path, body)
        for path, document in documents.items()
        for resource_type, _, body in support.iter_resources(document)
        if resource_type == "google_storage_transfer_job"
    ]
    if len(jobs) != 1:
        return [f"expected exactly one google_storage_transfer_job, found {len(jobs)}"]
    path, job = jobs[0]
    problems = []
    for forbidden in ("schedule", "event_stream"):
        if forbidden in job:
            problems.append(f"{path.name}: the transfer job has a {forbidden} block; the flow must be the only trigger")
    spec = job["transfer_spec"][0]
    source = spec["aws_s3_data_source"][0]
    if "aws_access_key" in source:
        problems.append(f"{path.name}: the transfer job embeds an AWS access key")
    if not {"role_arn", "credentials_secret"} <= source.keys():
        problems.append(f"{path.name}: the S3 source must authenticate with role_arn or credentials_secret")
    sink_path = support.unquote(spec["gcs_data_sink"][0].get("path"))
    if sink_path != "raw/":
        problems.append(f"{path.name}: the transfer job writes to {sink_path!r} instead of raw/")
    return problems


def _find_checkov_skip_problems(documents: Mapping[Path, Mapping[str, Any]]) -> list[str]:
    """List checkov skip comments without a check ID or without a reason of at least five words."""
    problems = []
    for path, document in documents.items():
        for block_type in ("resource", "data"):
            for resource_type, name, body in support.iter_resources(document, block_type):
                for comment in support.skip_comments(body):
                    match = CHECKOV_SKIP.match(comment)
                    if match is None:
                        problems.append(f"{path.name}: {resource_type}.{name} has a malformed skip: {comment!r}")
                    elif len(match["reason"].split()) < 5:
                        problems.append(f"{path.name}: {resource_type}.{name} skips a check without a real reason: {comment!r}")
    return problems


def _parse_directory(directory: Path) -> dict[Path, dict[str, Any]]:
    return {path: support.load_hcl(path) for path in sorted(directory.glob("*.tf"))}


@pytest.fixture(scope="module")
def documents(hcl2_module: object) -> dict[Path, dict[str, Any]]:
    """Every .tf file under terraform/, parsed."""
    assert TF_FILES, "terraform/ contains no .tf files"
    return {path: support.load_hcl(path) for path in TF_FILES}


@pytest.fixture(scope="module")
def module_documents(documents: dict[Path, dict[str, Any]]) -> dict[Path, dict[str, Any]]:
    """The .tf files of the root module only (not the examples)."""
    return {path: doc for path, doc in documents.items() if path.parent == support.TERRAFORM_DIR}


def _resources(documents: Mapping[Path, Mapping[str, Any]], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        name: body
        for document in documents.values()
        for found_type, name, body in support.iter_resources(document)
        if found_type == resource_type
    }


def _variables(documents: Mapping[Path, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: body for document in documents.values() for name, body in support.iter_blocks(document, "variable")}


# --- formatting -------------------------------------------------------------------


class TestFormatting:
    def test_fmt_check_passes(self, terraform_bin: Path, tool_env: dict[str, str]) -> None:
        completed = subprocess.run(
            [str(terraform_bin), "fmt", "-check", "-diff", "-recursive", str(support.TERRAFORM_DIR)],
            capture_output=True,
            text=True,
            env=tool_env,
            timeout=60,
            check=False,
        )
        assert completed.returncode == 0, f"terraform fmt found unformatted files:\n{completed.stdout}{completed.stderr}"

    def test_fmt_check_flags_misaligned_file(self, terraform_bin: Path, tool_env: dict[str, str], tmp_path: Path) -> None:
        (tmp_path / "main.tf").write_text('variable "x" {\n  type = string\n  description = "X."\n}\n')
        completed = subprocess.run(
            [str(terraform_bin), "fmt", "-check", "-recursive", str(tmp_path)],
            capture_output=True,
            text=True,
            env=tool_env,
            timeout=60,
            check=False,
        )
        assert completed.returncode != 0


# --- structure ----------------------------------------------------------------------


class TestModuleStructure:
    def test_expected_files_exist(self) -> None:
        expected = {
            "versions.tf", "variables.tf", "outputs.tf", "main.tf", "network.tf", "gke.tf", "storage.tf",
            "transfer.tf", "iam.tf", "secrets.tf", "registry.tf", "monitoring.tf",
        }
        present = {path.name for path in support.TERRAFORM_DIR.glob("*.tf")}
        assert expected <= present, f"missing: {sorted(expected - present)}"

    def test_variables_typed_and_described(self, documents: dict[Path, dict[str, Any]]) -> None:
        assert _find_variable_problems(documents) == []

    def test_outputs_described_and_secrets_sensitive(self, documents: dict[Path, dict[str, Any]]) -> None:
        assert _find_output_problems(documents) == []

    def test_versions_bounded_both_sides(self, documents: dict[Path, dict[str, Any]]) -> None:
        assert _find_version_problems(documents) == []

    def test_root_module_configures_no_provider(self, module_documents: dict[Path, dict[str, Any]]) -> None:
        providers = [path.name for path, doc in module_documents.items() if doc.get("provider")]
        assert providers == [], "provider blocks belong in the calling root module (examples/)"

    def test_names_are_snake_case(self, documents: dict[Path, dict[str, Any]]) -> None:
        names = [name for doc in documents.values() for block in ("variable", "output") for name, _ in support.iter_blocks(doc, block)]
        names += [name for doc in documents.values() for block in ("resource", "data") for _, name, _ in support.iter_resources(doc, block)]
        names += [key for doc in documents.values() for locals_block in doc.get("locals", []) for key in locals_block if not key.startswith("__")]
        offenders = [name for name in names if not SNAKE_CASE.match(name)]
        assert offenders == []

    def test_checkov_skips_carry_reasons(self, documents: dict[Path, dict[str, Any]]) -> None:
        assert _find_checkov_skip_problems(documents) == []

    def test_no_secret_values_in_code(self) -> None:
        access_key_id = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
        files = TF_FILES + sorted(support.TERRAFORM_DIR.rglob("*.tfvars*"))
        leaks = [path.name for path in files if access_key_id.search(path.read_text())]
        assert leaks == []

    def test_no_secret_versions_managed(self, documents: dict[Path, dict[str, Any]]) -> None:
        assert _resources(documents, "google_secret_manager_secret_version") == {}


class TestTransferJob:
    def test_job_matches_design(self, documents: dict[Path, dict[str, Any]]) -> None:
        assert _find_transfer_job_problems(documents) == []

    def test_source_is_client_input_prefix(self, documents: dict[Path, dict[str, Any]]) -> None:
        source = _resources(documents, "google_storage_transfer_job")["main"]["transfer_spec"][0]["aws_s3_data_source"][0]
        assert source["bucket_name"] == "${var.client_s3.input_bucket}"
        assert source["path"] == "${var.client_s3.input_prefix}"

    def test_source_age_guard_below_raw_retention(self, documents: dict[Path, dict[str, Any]]) -> None:
        job = _resources(documents, "google_storage_transfer_job")["main"]
        conditions = job["transfer_spec"][0]["object_conditions"][0]
        assert "max_object_age_days" in conditions["max_time_elapsed_since_last_modification"]
        preconditions = job["lifecycle"][0]["precondition"]
        assert any("raw_retention_days" in check["condition"] for check in preconditions)


class TestStorage:
    def test_bucket_hardening(self, module_documents: dict[Path, dict[str, Any]]) -> None:
        bucket = _resources(module_documents, "google_storage_bucket")["main"]
        assert bucket["uniform_bucket_level_access"] is True
        assert support.unquote(bucket["public_access_prevention"]) == "enforced"
        assert bucket["versioning"][0]["enabled"] is True

    @pytest.mark.parametrize(("prefix", "age"), [("raw/", "raw_retention_days"), ("temp/", "temp_retention_days")])
    def test_prefix_expires(self, module_documents: dict[Path, dict[str, Any]], prefix: str, age: str) -> None:
        bucket = _resources(module_documents, "google_storage_bucket")["main"]
        rules = [
            rule for rule in bucket["lifecycle_rule"]
            if support.unquote(rule["action"][0]["type"]) == "Delete"
            and [support.unquote(p) for p in rule["condition"][0].get("matches_prefix", [])] == [prefix]
        ]
        assert len(rules) == 1
        assert rules[0]["condition"][0]["age"] == f"${{var.bucket.{age}}}"


class TestKubernetesEngine:
    def test_cluster_security_settings(self, module_documents: dict[Path, dict[str, Any]]) -> None:
        cluster = _resources(module_documents, "google_container_cluster")["primary"]
        assert cluster["workload_identity_config"][0]["workload_pool"] == "${local.workload_identity_pool}"
        assert cluster["private_cluster_config"][0]["enable_private_nodes"] is True
        assert cluster["release_channel"][0]["channel"] == "${var.cluster.release_channel}"
        assert cluster["remove_default_node_pool"] is True

    def test_node_pools_use_gke_metadata_server(self, module_documents: dict[Path, dict[str, Any]]) -> None:
        pools = _resources(module_documents, "google_container_node_pool")
        assert set(pools) == {"system", "dask_spot"}
        for pool in pools.values():
            config = pool["node_config"][0]
            assert support.unquote(config["workload_metadata_config"][0]["mode"]) == "GKE_METADATA"

    def test_spot_pool_scales_from_zero(self, module_documents: dict[Path, dict[str, Any]]) -> None:
        pool = _resources(module_documents, "google_container_node_pool")["dask_spot"]
        config = pool["node_config"][0]
        assert config["spot"] is True
        assert support.unquote(config["taint"][0]["effect"]) == "NO_SCHEDULE"
        assert pool["autoscaling"][0]["min_node_count"] == "${var.dask_node_pool.min_node_count}"
        dask_pool_type = _variables(module_documents)["dask_node_pool"]["type"]
        assert "min_node_count = optional(number, 0)" in dask_pool_type

    def test_system_pool_is_on_demand(self, module_documents: dict[Path, dict[str, Any]]) -> None:
        config = _resources(module_documents, "google_container_node_pool")["system"]["node_config"][0]
        assert config.get("spot") in (None, False)
        assert "taint" not in config

    def test_workload_identity_members(self, module_documents: dict[Path, dict[str, Any]]) -> None:
        binding = _resources(module_documents, "google_service_account_iam_member")["workload_identity"]
        assert support.unquote(binding["role"]) == "roles/iam.workloadIdentityUser"
        assert support.unquote(binding["member"]) == (
            "serviceAccount:${local.workload_identity_pool}[${var.kubernetes_namespace}/${each.value.kubernetes_sa}]"
        )


class TestContractWithPython:
    """The Terraform outputs and log filters must fit the settings and log format of compute/."""

    def test_flow_environment_loads_gke_profile(self, module_documents: dict[Path, dict[str, Any]]) -> None:
        settings_module = pytest.importorskip("compute.settings", reason="the compute package is not importable")
        outputs = {name: body for doc in module_documents.values() for name, body in support.iter_blocks(doc, "output")}
        names = [key for key in outputs["flow_environment"]["value"] if not key.startswith("__")]
        environ = {
            "LMCO2_STORAGE__INPUT": "s3://client-in/input/{yyyymmdd}/",
            "LMCO2_STORAGE__RAW": "gs://ours/raw/{yyyymmdd}/",
            "LMCO2_STORAGE__TEMP": "gs://ours/temp/{yyyymmdd}/",
            "LMCO2_STORAGE__PROCESSED": "gs://ours/processed/{yyyymmdd}/",
            "LMCO2_STORAGE__OUTPUT": "s3://client-out/output/{yyyymmdd}/",
            "LMCO2_TRANSFER__PROJECT_ID": "my-project",
            "LMCO2_TRANSFER__JOB_NAME": "transferJobs/123",
            "LMCO2_CREDENTIALS__AWS_SECRET": "projects/my-project/secrets/lm-co2-aws-flow-credentials",
        }
        assert sorted(names) == sorted(environ)
        settings = settings_module.load_settings("gke", environ=environ)
        assert settings.storage.raw == environ["LMCO2_STORAGE__RAW"]
        assert settings.transfer.job_name == "transferJobs/123"

    def test_log_metric_reads_json_log_fields(self, module_documents: dict[Path, dict[str, Any]]) -> None:
        logs = pytest.importorskip("compute.logs", reason="the compute package is not importable")
        import json
        import logging

        record = logging.LogRecord("flows.daily", logging.ERROR, __file__, 1, "run failed", None, None)
        record.event, record.phase, record.run_date, record.flow_run_id = "run_failed", "compute", "2026-12-01", "abc"
        payload = json.loads(logs.JsonFormatter().format(record))
        metric = _resources(module_documents, "google_logging_metric")["run_events"]
        for field in re.findall(r"jsonPayload\.(\w+)", str(metric["label_extractors"])):
            assert field in payload, f"the log-based metric extracts jsonPayload.{field}, which compute.logs does not write"
        assert payload["event"] == "run_failed"


class TestExample:
    def test_example_calls_module(self) -> None:
        example = support.load_hcl(support.TERRAFORM_DIR / "examples" / "basic" / "main.tf")
        modules = {name: body for name, body in support.iter_blocks(example, "module")}
        assert support.unquote(modules["lm_co2"]["source"]) == "../.."

    def test_tfvars_example_sets_required_variables(self, hcl2_module: object) -> None:
        example_dir = support.TERRAFORM_DIR / "examples" / "basic"
        declared = _variables({example_dir / "variables.tf": support.load_hcl(example_dir / "variables.tf")})
        required = {name for name, body in declared.items() if "default" not in body}
        parsed = support.load_hcl(example_dir / "terraform.tfvars.example")
        values = {key for key in parsed if not key.startswith("__")}
        assert required <= values
        assert values <= declared.keys()


# --- the checkers can fail ------------------------------------------------------------


class TestCheckersCatchBrokenCode:
    def _write(self, tmp_path: Path, name: str, text: str) -> dict[Path, dict[str, Any]]:
        (tmp_path / name).write_text(textwrap.dedent(text))
        return _parse_directory(tmp_path)

    def test_untyped_variable_reported(self, hcl2_module: object, tmp_path: Path) -> None:
        documents = self._write(tmp_path, "variables.tf", """
            variable "region" {
              default = "asia-northeast1"
            }
            variable "enabled" {
              type        = bool
              description = "Whether it is on"
            }
        """)
        problems = _find_variable_problems(documents)
        assert any("region has no type" in p for p in problems)
        assert any("region has no description" in p for p in problems)
        assert any("not a full sentence" in p for p in problems)
        assert any("should be named enable_* or create_*" in p for p in problems)

    def test_plain_secret_output_reported(self, hcl2_module: object, tmp_path: Path) -> None:
        documents = self._write(tmp_path, "outputs.tf", """
            output "cluster_endpoint" {
              description = "Endpoint."
              value       = google_container_cluster.primary.endpoint
            }
            output "webhook" {
              value = google_secret_manager_secret_version.webhook.secret_data
            }
        """)
        problems = _find_output_problems(documents)
        assert any("cluster_endpoint exposes secret material" in p for p in problems)
        assert any("webhook has no description" in p for p in problems)
        assert any("webhook exposes secret material" in p for p in problems)

    def test_unbounded_provider_reported(self, hcl2_module: object, tmp_path: Path) -> None:
        documents = self._write(tmp_path, "versions.tf", """
            terraform {
              required_version = ">= 1.9"
              required_providers {
                google = {
                  source  = "hashicorp/google"
                  version = ">= 7.0"
                }
              }
            }
        """)
        problems = _find_version_problems(documents)
        assert any("required_version" in p for p in problems)
        assert any("provider google" in p for p in problems)

    def test_scheduled_transfer_job_reported(self, hcl2_module: object, tmp_path: Path) -> None:
        documents = self._write(tmp_path, "transfer.tf", """
            resource "google_storage_transfer_job" "main" {
              description = "x"
              schedule {
                schedule_start_date {
                  year  = 2026
                  month = 1
                  day   = 1
                }
              }
              transfer_spec {
                aws_s3_data_source {
                  bucket_name = "client"
                  aws_access_key {
                    access_key_id     = var.key_id
                    secret_access_key = var.secret
                  }
                }
                gcs_data_sink {
                  bucket_name = "ours"
                  path        = "processed/"
                }
              }
            }
        """)
        problems = _find_transfer_job_problems(documents)
        assert any("schedule block" in p for p in problems)
        assert any("embeds an AWS access key" in p for p in problems)
        assert any("instead of raw/" in p for p in problems)

    def test_unjustified_skip_reported(self, hcl2_module: object, tmp_path: Path) -> None:
        documents = self._write(tmp_path, "storage.tf", """
            resource "google_storage_bucket" "main" {
              #checkov:skip=CKV_GCP_62:not needed
              name     = "x"
              location = "ASIA-NORTHEAST1"
            }
        """)
        problems = _find_checkov_skip_problems(documents)
        assert any("without a real reason" in p for p in problems)
