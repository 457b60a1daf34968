#!/bin/sh
# Bring the schema up to date before web workers or ingest touch the database (idempotent).
set -eu
flask --app dashboard init-db
exec "$@"
