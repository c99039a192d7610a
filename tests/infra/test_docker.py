"""Static checks of the Dockerfile and .dockerignore.

No Docker engine is available in this environment, so the image is never built
here. These tests check the promises the Dockerfile makes to the Kubernetes
manifests (user, environment, install command), and that the build context
keeps local state out.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import lmco2_infra_support as support
import pytest
import yaml

DOCKERFILE = support.REPO_ROOT / "Dockerfile"
DOCKERIGNORE = support.REPO_ROOT / ".dockerignore"


def _instructions(text: str) -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    pairs = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _is_ignored(path: str, patterns: list[str]) -> bool:
    """Apply .dockerignore patterns in order; the last matching pattern wins."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        bare = pattern[1:] if negate else pattern
        bare = bare.rstrip("/")
        candidates = [path] + [str(parent) for parent in Path(path).parents if str(parent) != "."]
        if any(fnmatch.fnmatch(candidate, bare) or fnmatch.fnmatch(candidate, bare.replace("**/", "")) for candidate in candidates):
            ignored = not negate
    return ignored


def _ignore_patterns() -> list[str]:
    return [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]


def _copy_sources() -> list[str]:
    sources = []
    for keyword, arguments in _instructions(DOCKERFILE.read_text()):
        if keyword == "COPY" and "--from=" not in arguments:
            parts = [part for part in arguments.split() if not part.startswith("--")]
            sources.extend(parts[:-1])
    return sources


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return _instructions(DOCKERFILE.read_text())


class TestDockerfile:
    def test_base_image_pinned_to_patch_release(self, instructions: list[tuple[str, str]]) -> None:
        args = dict(arguments.split("=", 1) for keyword, arguments in instructions if keyword == "ARG" and "=" in arguments)
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", args["PYTHON_IMAGE"])
        froms = [arguments for keyword, arguments in instructions if keyword == "FROM"]
        assert froms and all(arguments.startswith("${PYTHON_IMAGE}") for arguments in froms)

    def test_installs_project_with_constraints(self, instructions: list[tuple[str, str]]) -> None:
        runs = " ".join(arguments for keyword, arguments in instructions if keyword == "RUN")
        assert "pip install -c constraints.txt ." in runs
        assert "pip check" in runs

    def test_runs_as_manifest_user(self, instructions: list[tuple[str, str]]) -> None:
        (user,) = [arguments for keyword, arguments in instructions if keyword == "USER"]
        uid, _, gid = user.partition(":")
        (cluster,) = support.load_yaml_documents(support.K8S_DIR / "daskcluster.yaml")
        template = json.loads((support.HELM_DIR / "prefect-base-job-template.json").read_text())
        pod_contexts = [cluster["spec"][role]["spec"]["securityContext"] for role in ("scheduler", "worker")]
        pod_contexts.append(template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["securityContext"])
        for context in pod_contexts:
            assert context["runAsUser"] == int(uid)
            assert context["runAsGroup"] == int(gid)

    def test_gcsfs_layout_lookup_disabled(self, instructions: list[tuple[str, str]]) -> None:
        env = " ".join(arguments for keyword, arguments in instructions if keyword == "ENV")
        assert "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false" in env

    def test_ships_numba_cache_for_generic_cpu(self, instructions: list[tuple[str, str]]) -> None:
        env = " ".join(arguments for keyword, arguments in instructions if keyword == "ENV")
        assert "NUMBA_CPU_NAME=generic" in env
        assert "NUMBA_CACHE_DIR=/tmp/numba-cache" in env
        assert "LMCO2_NUMBA_CACHE_SEED=/opt/numba-cache" in env
        runtime = instructions[max(i for i, (keyword, arguments) in enumerate(instructions) if keyword == "FROM"):]
        warm = [arguments for keyword, arguments in runtime if keyword == "RUN" and "numba_cache.main()" in arguments]
        assert len(warm) == 1, "the runtime stage must build the cache after copying the final virtual environment"
        assert "NUMBA_CACHE_DIR=/opt/numba-cache" in warm[0]
        copy_venv = next(i for i, (keyword, arguments) in enumerate(runtime) if keyword == "COPY" and "/opt/venv" in arguments)
        assert copy_venv < next(i for i, (keyword, arguments) in enumerate(runtime) if keyword == "RUN" and "numba_cache.main()" in arguments)
        assert runtime.index(("USER", "10001:10001")) > copy_venv

    def test_copied_sources_allowed_by_dockerignore(self) -> None:
        patterns = _ignore_patterns()
        blocked = [source for source in _copy_sources() if not source.endswith("*") and _is_ignored(source.rstrip("/"), patterns)]
        assert blocked == []

    def test_copies_cluster_template_of_gke_profile(self) -> None:
        profile = support.REPO_ROOT / "compute" / "profiles" / "gke.yaml"
        if not profile.is_file():
            pytest.skip("compute/profiles/gke.yaml is not in the repository yet")
        spec_path = yaml.safe_load(profile.read_text())["cluster"]["spec_path"]
        assert spec_path in _copy_sources()

    def test_workdir_matches_prefect_pull_step(self, instructions: list[tuple[str, str]]) -> None:
        prefect_file = support.REPO_ROOT / "prefect.yaml"
        if not prefect_file.is_file():
            pytest.skip("prefect.yaml is not in the repository yet")
        pull_steps = yaml.safe_load(prefect_file.read_text()).get("pull") or []
        directories = [
            step["prefect.deployments.steps.set_working_directory"]["directory"]
            for step in pull_steps
            if "prefect.deployments.steps.set_working_directory" in step
        ]
        workdirs = [arguments for keyword, arguments in instructions if keyword == "WORKDIR"]
        assert directories == [workdirs[-1]]

    def test_copied_sources_exist(self) -> None:
        missing = [s for s in _copy_sources() if not s.endswith("*") and not (support.REPO_ROOT / s).exists()]
        if missing:
            pytest.skip(f"project files not in the repository yet: {', '.join(missing)}")
        assert missing == []


class TestDockerignore:
    @pytest.mark.parametrize(
        "path",
        [".git", ".venv/bin/python", ".venv-infra", "terraform/terraform.tfstate", "terraform/examples/basic/terraform.tfvars",
         "tests/infra/test_docker.py", "var/cache", ".env", "compute/__pycache__/x.pyc", "k8s/rbac.yaml"],
    )
    def test_local_state_excluded(self, path: str) -> None:
        assert _is_ignored(path, _ignore_patterns())

    @pytest.mark.parametrize(
        "path", ["pyproject.toml", "constraints.txt", "compute/emissions.py", "flows/daily.py", "k8s/daskcluster.yaml"]
    )
    def test_sources_included(self, path: str) -> None:
        assert not _is_ignored(path, _ignore_patterns())

    def test_matcher_honours_negation(self) -> None:
        assert _is_ignored("secret.json", ["*"])
        assert not _is_ignored("flows/daily.py", ["*", "!flows/"])
