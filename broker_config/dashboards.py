"""Dashboard accounts: one for the dashboard, one more per ingest worker that runs beside the first."""

from __future__ import annotations

from pathlib import Path

from broker_config.manage import GeneratedPaths, _keeping_owner, _refresh_acl, _save_credential
from broker_config.passwords import generate_password, hash_password, read_passwd, write_passwd
from broker_config.registry import MAX_INGEST_WORKERS, Dashboard, InvalidName, check_name, load_registry, save_registry

# Enough for `python -m dashboard.ingest --workers auto` on a 16-core machine; more with --ingest-workers.
DEFAULT_INGEST_WORKERS = 16


def add_dashboard(
    out_dir: Path,
    username: str = "dashboard",
    app: str | None = None,
    locations: tuple[str, ...] = (),
    password: str | None = None,
    ingest_workers: int = DEFAULT_INGEST_WORKERS,
) -> str:
    """Register (or re-key) a dashboard account and its ingest worker accounts, regenerate the ACL; returns the password."""
    check_name(username, "dashboard username")
    dashboard = Dashboard(check_name(app or username, "application id"),
                          tuple(check_name(x, "location") for x in locations), ingest_workers)
    if not 1 <= ingest_workers <= MAX_INGEST_WORKERS:
        raise InvalidName(f"invalid ingest worker count {ingest_workers}: must be 1-{MAX_INGEST_WORKERS}")
    paths = GeneratedPaths(Path(out_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    registry = load_registry(paths.registry)
    for account in dashboard.accounts(username):
        registry.check_unique(account, "dashboard" if account == username else "ingest worker", owner=username)
    old = registry.dashboards.get(username)
    registry.dashboards[username] = dashboard
    password = password or generate_password()
    save_registry(paths.registry, registry)
    _save_credential(paths, username, password)
    # Worker accounts share the dashboard's password (one secret to deploy); stale ones from a larger count go.
    entries = read_passwd(paths.passwd)
    for account in (old.accounts(username)[1:] if old else []):
        entries.pop(account, None)
    entries |= {account: hash_password(password) for account in dashboard.accounts(username)[1:]}
    _keeping_owner(paths.passwd, lambda: write_passwd(paths.passwd, entries))
    _refresh_acl(paths)
    return password
