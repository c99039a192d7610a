"""The DaskCluster built for GKE, prefect.yaml, and the JSON log format, checked offline."""

from __future__ import annotations

import copy
import datetime as dt
import inspect
import io
import json
import logging
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from compute import logs
from compute.cluster import FLOW_RUN_LABEL, PROFILER_ENV, WORKER_MALLOC_ENV, build_cluster_spec, run_labels
from compute.settings import load_settings
from flows import deployments

from .conftest import PROJECT_ROOT


def _crd_schema() -> dict[str, Any]:
    crd_path = resources.files("dask_kubernetes") / "operator/deployment/helm/dask-kubernetes-operator/crds/daskcluster.yaml"
    crd = yaml.safe_load(crd_path.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _gke_spec() -> dict[str, Any]:
    settings = load_settings("gke", environ={}).cluster.model_copy(update={"image": "registry.example/lm-co2:1.2.3"})
    return build_cluster_spec(settings, name="lm-co2-20261201-abcd1234", labels=run_labels("20261201", "abcd1234-run"),
                              project_root=PROJECT_ROOT)


class TestDaskClusterSpec:
    def test_spec_validates_against_crd(self) -> None:
        errors = list(jsonschema.Draft7Validator(_crd_schema()).iter_errors(_gke_spec()))
        assert [e.message for e in errors] == []

    def test_broken_spec_fails_crd(self) -> None:
        spec = copy.deepcopy(_gke_spec())
        spec["spec"]["worker"]["replicas"] = "two"
        del spec["spec"]["scheduler"]["service"]
        errors = list(jsonschema.Draft7Validator(_crd_schema()).iter_errors(spec))
        assert len(errors) == 2

    def test_spec_carries_run_labels_and_sizes(self) -> None:
        spec = _gke_spec()
        body = spec["spec"]
        assert spec["metadata"]["labels"][FLOW_RUN_LABEL] == "abcd1234-run"
        assert body["scheduler"]["metadata"]["labels"][FLOW_RUN_LABEL] == "abcd1234-run"
        assert body["scheduler"]["service"]["selector"]["dask.org/cluster-name"] == spec["metadata"]["name"]
        assert body["idleTimeout"] == 900
        scheduler = body["scheduler"]["spec"]["containers"][0]
        worker = body["worker"]["spec"]["containers"][0]
        assert scheduler["image"] == worker["image"] == "registry.example/lm-co2:1.2.3"
        assert scheduler["resources"] != worker["resources"]
        assert body["worker"]["spec"]["nodeSelector"]["cloud.google.com/gke-spot"] == "true"
        assert "cloud.google.com/gke-spot" not in body["scheduler"]["spec"].get("nodeSelector", {})
        assert {"name": "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "value": "false"} in worker["env"]

    def test_template_allocator_env(self) -> None:
        """The template's own values (not the defaults build_cluster_spec fills in) equal WORKER_MALLOC_ENV."""
        template = yaml.safe_load((PROJECT_ROOT / "k8s" / "daskcluster.yaml").read_text(encoding="utf-8"))
        env = {e["name"]: e.get("value") for e in template["spec"]["worker"]["spec"]["containers"][0]["env"]}
        assert {k: env.get(k) for k in WORKER_MALLOC_ENV} == WORKER_MALLOC_ENV
        assert env.get(PROFILER_ENV) == "False"

    def test_worker_profiling_setting_reaches_workers(self) -> None:
        def worker_env(profiling: bool) -> dict[str, Any]:
            settings = load_settings("gke", environ={}).cluster.model_copy(update={"worker_profiling": profiling})
            spec = build_cluster_spec(settings, name="lm-co2-x", labels={}, project_root=PROJECT_ROOT)
            return {e["name"]: e.get("value") for e in spec["spec"]["worker"]["spec"]["containers"][0]["env"]}

        assert worker_env(False)[PROFILER_ENV] == "False"
        assert worker_env(True)[PROFILER_ENV] == "True"


class TestPrefectYaml:
    def test_no_problems(self) -> None:
        assert deployments.check_deployments() == []

    def test_daily_schedule_is_tokyo_night(self) -> None:
        import asyncio

        from prefect.server.schemas.schedules import CronSchedule

        daily = next(d for d in deployments.load_deployments() if d["name"] == "daily")
        schedule = daily["schedules"][0]
        assert schedule["timezone"] == "Asia/Tokyo"
        cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
        dates = asyncio.run(cron.get_dates(n=2, start=dt.datetime(2026, 12, 1, tzinfo=dt.UTC)))
        local = [d.astimezone(dt.timezone(dt.timedelta(hours=9))) for d in dates]
        assert [(d.hour, d.minute) for d in local] == [(3, 30), (3, 30)]
        assert (local[1] - local[0]) == dt.timedelta(days=1)

    def test_parameters_match_flows(self) -> None:
        from flows.backfill import co2_backfill
        from flows.daily import co2_daily

        assert list(inspect.signature(co2_daily.fn).parameters) == ["run_date", "force", "phases", "profile"]
        assert list(inspect.signature(co2_backfill.fn).parameters)[:2] == ["start_date", "end_date"]
        for flow in (co2_daily, co2_backfill):
            assert flow.parameters.model_dump()["properties"]

    @pytest.mark.parametrize("entrypoint", ["flows/daily.py:co2_daily", "flows/backfill.py:co2_backfill"])
    def test_parameter_form_in_japanese_and_english(self, entrypoint: str) -> None:
        # What `prefect deploy` puts in the UI's Custom run form: Japanese first, then English.
        from prefect.utilities.callables import parameter_schema_from_entrypoint

        properties = parameter_schema_from_entrypoint(str(PROJECT_ROOT / entrypoint)).model_dump()["properties"]
        for name, schema in properties.items():
            japanese, _, english = re.sub(r"\s+/ ", " / ", schema.get("description") or "").partition(" / ")
            assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", japanese), name
            assert english.strip(), name

    def test_deployment_descriptions_in_japanese_and_english(self) -> None:
        for deployment in deployments.load_deployments():
            japanese, _, english = deployment["description"].partition(" / ")
            assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", japanese), deployment["name"]
            assert english.strip(), deployment["name"]

    def test_work_pool_is_kubernetes(self) -> None:
        assert deployments.WORK_POOL_TYPE == "kubernetes"
        template = json.loads(deployments.BASE_JOB_TEMPLATE.read_text())
        for deployment in deployments.load_deployments():
            assert deployment["work_pool"]["name"] == deployments.WORK_POOL_NAME
            assert set(deployment["work_pool"]["job_variables"]) <= set(template["variables"]["properties"])

    def test_check_reports_unknown_parameter(self, tmp_path: Path) -> None:
        data = yaml.safe_load(deployments.DEPLOYMENT_FILE.read_text())
        data["deployments"][0]["parameters"]["day"] = "2026-12-01"
        broken = tmp_path / "prefect.yaml"
        broken.write_text(yaml.safe_dump(data))
        assert any("'day'" in p for p in deployments.check_deployments(broken))

    def test_flow_rejects_invalid_phase(self) -> None:
        from prefect.exceptions import ParameterTypeError

        from flows.daily import co2_daily

        with pytest.raises(ParameterTypeError):
            co2_daily.validate_parameters({"run_date": "2026-12-01", "phases": ["compute", "deliver"]})


class TestJsonLogs:
    def test_record_has_cloud_logging_fields(self) -> None:
        stream = io.StringIO()
        logger = logging.getLogger("compute.test_json")
        handler = logs.install_json_console(("compute.test_json",), stream=stream)
        logs.register_secret("s3cr3t-value-for-test")
        try:
            with logs.log_context(run_date="2026-12-01", flow_run_id="run-1"), logs.log_context(phase="fetch"):
                logger.warning("object retry key=s3cr3t-value-for-test", extra={"event": "object_retry", "lmco2_attempt": 2})
        finally:
            logger.removeHandler(handler)
        record = json.loads(stream.getvalue())
        assert record["severity"] == "WARNING"
        assert record["event"] == "object_retry"
        assert (record["run_date"], record["flow_run_id"], record["phase"]) == ("2026-12-01", "run-1", "fetch")
        assert record["attempt"] == 2
        assert "s3cr3t-value-for-test" not in stream.getvalue()
