# Trainer image: TensorFlow (CPU) and the OpenVINO converter (the `trainer` extra). Run on request only.
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
COPY trainer ./trainer
RUN /opt/venv/bin/pip install ".[trainer]"

FROM python
# HOME in /tmp: compose runs this image as the host user, who has no home inside it.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp MPLCONFIGDIR=/tmp/matplotlib
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /tmp --shell /usr/sbin/nologin app \
    && mkdir -p /app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER app
CMD ["python", "-m", "trainer", "train", "--confs", "/app/confs.json"]
