# Edge node image: OpenVINO runtime only (the `edge` extra); TensorFlow never enters it.
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
COPY edge_node ./edge_node
RUN /opt/venv/bin/pip install ".[edge]"

FROM python
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /data --shell /usr/sbin/nologin app \
    && mkdir -p /app /data/inbox \
    && chown -R app:app /data \
    && chmod -R go-rwx /data
COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /usr/local/bin/healthcheck.py
WORKDIR /app
USER app
# /data (model store, outbox, inbox) is a volume; its ownership comes from this image.
VOLUME ["/data"]
EXPOSE 8080
# The node serves only POST /Inference, so a GET answered with 405 means it is up.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/bin/healthcheck.py", "http://127.0.0.1:8080/Inference", "405"]
CMD ["python", "-m", "edge_node", "run", "--confs", "/app/confs.json"]
