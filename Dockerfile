# One image for every role of the stack (api, worker, monitor, beat, init, the MLflow server):
# deploy/entrypoint.sh picks the role, docker-compose.yml runs each. The build stage installs the
# runtime requirements (requirements.txt: no test or lint tools) into a virtualenv; the runtime
# stage copies that virtualenv and the code, nothing else.
# BASE_IMAGE: a Debian bookworm image with python3 and its venv module; on a machine that cannot
# pull it, deploy/compose/images.sh builds a stand-in from Debian's packages.
ARG BASE_IMAGE=python:3.11.7-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --quiet -r /tmp/requirements.txt

FROM ${BASE_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DVC_NO_ANALYTICS=1 \
    API_PORT=8000 \
    STATE_DIR=/app/var \
    PIPELINE_WORKSPACE=/app/var/workspace \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus-multiproc
# curl: the healthchecks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl=7.88.* \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home \
        --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Code and params belong to root: the app user can read them, not change them.
COPY . .
# The only places the app writes. Created here, owned by the app user, so that a new volume
# mounted on one starts owned by it too (Docker copies the image directory's ownership into an
# empty volume; where the image has no directory the volume is root's).
RUN mkdir -p /app/var/workspace /mlartifacts "${PROMETHEUS_MULTIPROC_DIR}" \
    && chown app:app /app/var /app/var/workspace /mlartifacts "${PROMETHEUS_MULTIPROC_DIR}"
USER 10001:10001
EXPOSE 8000 9101
# No HEALTHCHECK: every role would inherit it (beat has nothing to probe, an api check would
# mark it unhealthy), and `docker compose up --wait` cannot wait on a role that disables it.
# docker-compose.yml gives each role its own: api /health/ready, worker and monitor /metrics.
# Last, so a new commit rebuilds one small layer: the commit pipeline runs tag versions with.
ARG GIT_COMMIT=unknown
ENV GIT_COMMIT=${GIT_COMMIT}
ENTRYPOINT ["/app/deploy/entrypoint.sh"]
CMD ["api"]
