# Dashboard image (web and ingest): the `dashboard` extra, served by gunicorn.
# BASE_IMAGE: the Python image, or a bare Debian bookworm (test-deploy's local base), which gets Debian's Python 3.11.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE} AS python
RUN if ! command -v python3 >/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi

FROM python AS build
# pip trusts the system's CA store (with any CA the base added), not only its own bundle.
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=/etc/ssl/certs/ca-certificates.crt
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml ./
COPY contracts ./contracts
# broker_config: `flask --app dashboard add-device` reads the broker's device registry.
COPY broker_config ./broker_config
COPY dashboard ./dashboard
RUN /opt/venv/bin/pip install ".[dashboard]"

FROM python
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 DASHBOARD_CONFS=/app/confs.json
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /data --shell /usr/sbin/nologin app \
    && mkdir -p /app /data/packages \
    && chown -R app:app /data \
    && chmod -R go-rwx /data
COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /usr/local/bin/healthcheck.py
COPY docker/entrypoint-dashboard.sh /usr/local/bin/entrypoint-dashboard.sh
WORKDIR /app
USER app
# /data (SQLite database, packages, secret key) is a volume shared by web and ingest.
VOLUME ["/data"]
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/bin/healthcheck.py", "http://127.0.0.1:5000/login", "200"]
ENTRYPOINT ["/bin/sh", "/usr/local/bin/entrypoint-dashboard.sh"]
CMD ["gunicorn", "--config", "python:dashboard.gunicorn_conf", "--bind", "0.0.0.0:5000", "--workers", "2", \
     "--access-logfile", "-", "dashboard:create_app()"]
