# syntax=docker/dockerfile:1
# One image for the API (gunicorn, the default command) and the worker (celery), see
# docker-compose.yml. Stage 1 builds wheels; stage 2 is a slim runtime without compilers.
FROM python:3.11.7-slim-bookworm AS build
WORKDIR /build
COPY requirements.txt .
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r requirements.txt

FROM python:3.11.7-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DVC_NO_ANALYTICS=1 \
    API_PORT=8000 \
    STATE_DIR=/app/var \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus-multiproc
# git: DVC records the commit; curl: the HEALTHCHECK.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git=1:2.39.* curl=7.88.* \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=build /wheels /wheels
COPY requirements.txt .
RUN pip install --no-index --find-links=/wheels -r requirements.txt && rm -rf /wheels
COPY --chown=app:app . .
RUN mkdir -p /app/var "${PROMETHEUS_MULTIPROC_DIR}" \
    && chown -R app:app /app/var "${PROMETHEUS_MULTIPROC_DIR}"
USER 10001:10001
EXPOSE 8000 9101
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "curl -fsS http://127.0.0.1:${API_PORT}/health/live || exit 1"]
ENTRYPOINT ["/app/deploy/entrypoint.sh"]
CMD ["api"]
