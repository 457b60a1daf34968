#!/bin/sh
# Copy the read-only rendered config into a private tmpfs with the modes Mosquitto needs, so
# the broker (which drops to `mosquitto`) can read its secrets whoever owns them on the host.
set -eu
src=/mosquitto/generated
dst=/mosquitto/config
for file in mosquitto.conf passwd acl tls/ca.crt tls/server.crt tls/server.key; do
    if [ ! -f "$src/$file" ]; then
        echo "error: $src/$file is missing: run 'python docker/prepare.py' on the host first" >&2
        exit 1
    fi
done
mkdir -p "$dst/tls" "$dst/run" "$dst/data" "$dst/conf.d"
# conf.d (included by mosquitto.conf): bridges to a central broker and its CA, if any were configured.
if [ -d "$src/conf.d" ]; then
    for file in "$src"/conf.d/*; do
        [ -f "$file" ] || continue
        cp "$file" "$dst/conf.d/"
        chown root:mosquitto "$dst/conf.d/${file##*/}"
        chmod 640 "$dst/conf.d/${file##*/}"
    done
fi
# The CA key and the plain-text credentials stay on the host.
for file in mosquitto.conf passwd acl tls/ca.crt tls/server.crt tls/server.key; do
    cp "$src/$file" "$dst/$file"
done
chown root:mosquitto "$dst/passwd" "$dst/acl" "$dst/tls/server.key"
chmod 640 "$dst/passwd" "$dst/acl" "$dst/tls/server.key"
chmod 644 "$dst/mosquitto.conf" "$dst/tls/ca.crt" "$dst/tls/server.crt"
chown mosquitto:mosquitto "$dst/run" "$dst/data"
exec mosquitto -c "$dst/mosquitto.conf"
