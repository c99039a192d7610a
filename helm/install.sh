#!/usr/bin/env bash
# Install or upgrade the Dask operator and the Prefect worker into the cluster of
# the current kubectl context. It runs from any directory because paths are
# resolved from this script's location. Needs helm 3 and kubectl.
#
# Required environment:
#   PREFECT_ACCOUNT_ID            Prefect Cloud account ID
#   PREFECT_WORKSPACE_ID          Prefect Cloud workspace ID
#   PREFECT_WORKER_CHART_VERSION  prefect-worker chart version to pin, listed by
#                                 `helm search repo prefect/prefect-worker --versions`
#   LMCO2_IMAGE                   pinned lm-co2 image, the default image of flow
#                                 runs and Dask pods in the base job template
#   LMCO2_FLOW_ENV                JSON file from `terraform output -json flow_environment`
# Optional environment:
#   DASK_OPERATOR_CHART_VERSION   default 2026.3.0 (matches dask-kubernetes in the image)
#   LMCO2_NAMESPACE               default lm-co2
#   DASK_OPERATOR_NAMESPACE       default dask-operator
#   DRY_RUN=1                     render both charts with `helm template` (which
#                                 also validates the values against the charts'
#                                 schemas) and change nothing in the cluster
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

dask_chart_version="${DASK_OPERATOR_CHART_VERSION:-2026.3.0}"
namespace="${LMCO2_NAMESPACE:-lm-co2}"
dask_namespace="${DASK_OPERATOR_NAMESPACE:-dask-operator}"
dry_run="${DRY_RUN:-0}"

fail() {
  echo "install.sh: $*" >&2
  exit 1
}

require_command() {
  command -v "$1" >/dev/null 2>&1 || fail "$1 not found on PATH; install it first."
}

require_env() {
  [[ -n "${!1:-}" ]] || fail "environment variable $1 is not set; see the header of this script."
}

require_command helm
require_command kubectl
require_command python3
require_env PREFECT_ACCOUNT_ID
require_env PREFECT_WORKSPACE_ID
require_env PREFECT_WORKER_CHART_VERSION
require_env LMCO2_IMAGE
require_env LMCO2_FLOW_ENV

# The base job template of this environment, in a temporary file. The worker's
# init container syncs it to the work pool on every start.
base_job_template="$(mktemp)"
trap 'rm -f "${base_job_template}"' EXIT
python3 "${script_dir}/render_job_template.py" --image "${LMCO2_IMAGE}" --flow-env "${LMCO2_FLOW_ENV}" \
  >"${base_job_template}"

helm repo add dask https://helm.dask.org --force-update >/dev/null
helm repo add prefect https://prefecthq.github.io/prefect-helm --force-update >/dev/null
helm repo update dask prefect >/dev/null

dask_args=(
  dask-operator dask/dask-kubernetes-operator
  --version "${dask_chart_version}"
  --namespace "${dask_namespace}"
  --values "${script_dir}/dask-operator-values.yaml"
)
worker_args=(
  prefect-worker prefect/prefect-worker
  --version "${PREFECT_WORKER_CHART_VERSION}"
  --namespace "${namespace}"
  --values "${script_dir}/prefect-worker-values.yaml"
  --set "worker.cloudApiConfig.accountId=${PREFECT_ACCOUNT_ID}"
  --set "worker.cloudApiConfig.workspaceId=${PREFECT_WORKSPACE_ID}"
  --set-file "worker.config.baseJobTemplate.configuration=${base_job_template}"
)

if [[ "${dry_run}" == "1" ]]; then
  helm template "${dask_args[@]}" >/dev/null
  helm template "${worker_args[@]}" >/dev/null
  echo "install.sh: both charts render with these values (dry run, nothing applied)."
  exit 0
fi

kubectl get namespace "${namespace}" >/dev/null 2>&1 \
  || fail "namespace ${namespace} does not exist; apply k8s/ first (docs/deploy.md, step 7)."
kubectl --namespace "${namespace}" get secret prefect-api-key >/dev/null 2>&1 \
  || fail "secret prefect-api-key is missing in ${namespace}; create it first (docs/deploy.md, step 8)."

# Helm installs CRDs only on the first install and never upgrades them, so
# apply the chart's CRDs explicitly every time.
helm show crds dask/dask-kubernetes-operator --version "${dask_chart_version}" \
  | kubectl apply --server-side --force-conflicts -f -

helm upgrade --install "${dask_args[@]}" --create-namespace --wait --timeout 5m
helm upgrade --install "${worker_args[@]}" --wait --timeout 5m

echo "install.sh: dask-operator ${dask_chart_version} in ${dask_namespace} and prefect-worker ${PREFECT_WORKER_CHART_VERSION} in ${namespace} are installed."
