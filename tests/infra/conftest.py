"""Fixtures for the offline infrastructure checks (terraform/, helm/, k8s/, Dockerfile)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Test modules import the shared helpers by name; this works in every pytest
# import mode because conftest.py is loaded before the test modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import lmco2_infra_support as support


@pytest.fixture(scope="session")
def tool_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for subprocesses: offline settings and an empty Terraform CLI config."""
    return support.offline_env(tmp_path_factory.mktemp("tool-env"))


@pytest.fixture(scope="session")
def terraform_bin() -> Path:
    path = support.find_tool("terraform")
    if path is None:
        pytest.skip("terraform is not installed (looked in .venv-infra/bin, .venv/bin and PATH)")
    return path


@pytest.fixture(scope="session")
def checkov_bin() -> Path:
    path = support.find_tool("checkov")
    if path is None:
        pytest.skip("checkov is not installed (looked in .venv-infra/bin, .venv/bin and PATH)")
    return path


@pytest.fixture(scope="session")
def kubectl_bin() -> Path:
    path = support.find_tool("kubectl")
    if path is None:
        pytest.skip("kubectl is not installed (looked in .venv-infra/bin, .venv/bin and PATH)")
    return path


@pytest.fixture(scope="session")
def hcl2_module() -> object:
    return pytest.importorskip("hcl2", reason="python-hcl2 is not installed in this environment")


@pytest.fixture(scope="session")
def kubernetes_validate_module() -> object:
    return pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed in this environment")


@pytest.fixture(scope="session")
def jsonschema_module() -> object:
    return pytest.importorskip("jsonschema", reason="jsonschema is not installed in this environment")


@pytest.fixture(scope="session")
def dask_chart_dir() -> Path:
    chart = support.dask_operator_chart_dir()
    if chart is None:
        pytest.skip("dask-kubernetes is not installed, so its operator chart and CRDs are unavailable")
    return chart


@pytest.fixture(scope="session")
def prefect_kubernetes_module() -> object:
    return pytest.importorskip("prefect_kubernetes", reason="prefect-kubernetes is not installed in this environment")
