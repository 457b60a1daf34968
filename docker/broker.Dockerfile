# Broker image: Debian's Mosquitto 2 and its clients (the healthcheck uses mosquitto_sub).
# BASE_IMAGE: any Debian bookworm image; test-deploy passes a local debootstrap base when no registry answers.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mosquitto mosquitto-clients \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /mosquitto/config /mosquitto/generated
COPY docker/entrypoint-broker.sh /usr/local/bin/entrypoint-broker.sh
EXPOSE 8883
# Starts as root only to copy its config into a private tmpfs, then Mosquitto drops to `mosquitto`.
ENTRYPOINT ["/bin/sh", "/usr/local/bin/entrypoint-broker.sh"]
