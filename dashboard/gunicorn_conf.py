"""gunicorn settings of the dashboard web app, shared by the demo, compose, the image and the tests.

`gunicorn --config python:dashboard.gunicorn_conf --bind HOST:PORT "dashboard:create_app()"`. Each connection
is a greenlet, so slow clients and long-lived event streams cannot take every worker thread; headers must
arrive within `keepalive` seconds and a body must keep flowing (see dashboard.gunicorn_worker).
"""
from __future__ import annotations

import os

worker_class = "dashboard.gunicorn_worker.DashboardWorker"
workers = int(os.environ.get("WEB_WORKERS", "2"))
# Open connections per worker: live streams and idle keep-alives included.
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS", "1000"))
# gunicorn's async workers allow this long for each request's headers (the first one's too).
keepalive = 5
timeout = 60
graceful_timeout = 30
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
