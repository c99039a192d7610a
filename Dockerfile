# syntax=docker/dockerfile:1
#
# One image for every lm-co2 process on GKE: the Prefect flow-run pod, the Dask
# scheduler and the Dask workers. Client, scheduler and workers must run the
# same Python, dask, distributed and cloudpickle versions, which one image
# guarantees.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/lm-co2/lm-co2:0.1.0 .
#
# The base image is pinned to a patch release. For reproducible builds pin its
# digest as well: `docker buildx imagetools inspect python:3.11.13-slim-bookworm`
# prints it; then build with
#   --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: install the project and its pinned dependencies into a venv --------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src
COPY pyproject.toml constraints.txt README.md* LICENSE* ./
COPY compute/ compute/
COPY flows/ flows/

# constraints.txt pins every transitive dependency, and `pip check` fails the
# build on a conflict instead of shipping it.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -c constraints.txt . \
    && pip check \
    && python -c "import compute"

# --- runtime -----------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="lm-co2" \
      org.opencontainers.image.description="Daily CO2 emissions batch: Prefect flow, Dask scheduler and Dask workers."

# GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false stops gcsfs from asking the Storage
# Control API for the bucket layout on every bucket access. The other variables
# point writable state at /tmp, the only writable path when the root file
# system is mounted read-only (k8s/daskcluster.yaml, the Prefect job template).
# NUMBA_CACHE_DIR must be writable: numba refuses to import a cached function
# when it finds no writable cache folder. The image carries the compiled loops
# in /opt/numba-cache (built below), and importing `compute` copies them into
# NUMBA_CACHE_DIR (compute/numba_cache.py), so a new pod loads them instead of
# compiling (about 8 s of CPU per worker on the benchmark machine).
# NUMBA_CPU_NAME=generic makes that machine code valid on every x86-64 node.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false \
    PREFECT_HOME=/tmp/prefect \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    NUMBA_CPU_NAME=generic \
    LMCO2_NUMBA_CACHE_SEED=/opt/numba-cache

# UID and GID 10001 match runAsUser and runAsGroup in the Kubernetes manifests.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-create-home \
       --home-dir /app --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv

# Compile the loops on a small sample day, in this stage: numba checks the
# modification time of the sources, which are now final. Nothing is fetched.
RUN DO_NOT_TRACK=1 NO_GCE_CHECK=True AWS_EC2_METADATA_DISABLED=true \
    NUMBA_CACHE_DIR=/opt/numba-cache LMCO2_NUMBA_CACHE_SEED= \
    python -c "from compute import numba_cache; raise SystemExit(numba_cache.main())" \
    && rm -rf /tmp/*

# The pull step of prefect.yaml changes to /app, and Prefect resolves the
# entrypoint flows/daily.py:co2_daily relative to it, so the flow sources are
# also kept as files here. The gke profile reads its DaskCluster template from
# k8s/daskcluster.yaml relative to the same directory.
WORKDIR /app
COPY flows/ flows/
COPY k8s/daskcluster.yaml k8s/daskcluster.yaml

USER 10001:10001

# The flow-run Job and the Dask operator always pass their own command.
CMD ["lm-co2", "--help"]
