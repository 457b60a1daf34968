# Trainer image: TensorFlow (CPU) and the OpenVINO converter (the `trainer` extra). Run on request only.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml ./
COPY contracts ./contracts
COPY trainer ./trainer
RUN /opt/venv/bin/pip install ".[trainer]"

FROM python:3.11-slim
# HOME in /tmp: compose runs this image as the host user, who has no home inside it.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp MPLCONFIGDIR=/tmp/matplotlib
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /tmp --shell /usr/sbin/nologin app \
    && mkdir -p /app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER app
CMD ["python", "-m", "trainer", "train", "--confs", "/app/confs.json"]
