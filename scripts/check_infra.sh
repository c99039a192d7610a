#!/usr/bin/env bash
# Run the offline checks of terraform/, helm/, k8s/ and the Dockerfile
# (tests/infra) and print the checkov summaries. Needs no network access:
# update checks and telemetry of every tool are switched off.
# Usage: scripts/check_infra.sh [extra pytest arguments]
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

export CHECKPOINT_DISABLE=1
export CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
export CKV_SKIP_PACKAGE_UPDATE_CHECK=true
export BC_SKIP_MAPPING=TRUE
export DO_NOT_TRACK=1
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export AWS_EC2_METADATA_DISABLED=true
export NO_GCE_CHECK=True
export GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false

python_bin="${repo_root}/.venv/bin/python"
[[ -x "${python_bin}" ]] || { echo "check_infra.sh: ${python_bin} not found; run 'make env' first." >&2; exit 1; }

"${python_bin}" -m pytest tests/infra -q "$@"

checkov_bin="${repo_root}/.venv-infra/bin/checkov"
if [[ -x "${checkov_bin}" ]]; then
  echo "checkov terraform/:"
  "${checkov_bin}" --directory terraform --framework terraform --skip-download --compact --quiet | grep -E "Passed checks|Check:|FAILED" || true
  echo "checkov k8s/ (applied manifests only; tests/infra also scans the Dask pods and the flow-run Job):"
  "${checkov_bin}" --directory k8s --framework kubernetes --skip-download --compact --quiet | grep -E "Passed checks|Check:|FAILED" || true
fi
