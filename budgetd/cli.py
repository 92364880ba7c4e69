"""The ``budgetd`` command: ``serve``, ``migrate`` and ``up`` (the quick start)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from prometheus_client import start_http_server

from budgetd import logs
from budgetd.app import build
from budgetd.settings import Settings
from budgetd.store import migrate

log = logging.getLogger("budgetd")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = argparse.ArgumentParser(prog="budgetd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gRPC daemon")
    serve.add_argument("--database-url", help="overrides BUDGETD_DATABASE_URL")
    serve.add_argument("--grpc-addr", help="overrides BUDGETD_GRPC_ADDR")
    serve.add_argument("--metrics-addr", help="overrides BUDGETD_METRICS_ADDR ('' disables)")
    serve.add_argument("--prices-file", help="overrides BUDGETD_PRICES_FILE")
    serve.add_argument(
        "--migrate", action="store_true", help="bring a PostgreSQL schema up to date first"
    )
    mig = sub.add_parser("migrate", help="bring the database schema up to date")
    mig.add_argument("--database-url", help="overrides BUDGETD_DATABASE_URL")
    sub.add_parser(
        "up", help="quick start: budgetd on SQLite, the fake upstream and the shim on :4000"
    )
    args = parser.parse_args(argv)
    if args.command == "up":
        from proxy_shim import up

        return up.main()

    overrides = {
        key: value
        for key, value in vars(args).items()
        if key in Settings.model_fields and value is not None
    }
    settings = Settings(**overrides)
    logs.configure(settings.log_level)
    if args.command == "migrate":
        return _migrate(settings)
    return _serve(settings, migrate_first=args.migrate)


def _migrate(settings: Settings) -> int:
    app = build(settings)
    migrate.upgrade(app.db)
    log.info("schema is current", extra={"fields": {"revision": migrate.head_revision()}})
    return 0


def _serve(settings: Settings, *, migrate_first: bool) -> int:
    from budgetd.api.server import serve

    app = build(settings)
    # An embedded SQLite has one user, so it migrates itself; a shared PostgreSQL is migrated
    # by an explicit step (or --migrate), never by whichever replica happens to start first.
    # Checked first: on a current schema Alembic is never loaded into the serving process.
    if not migrate.is_current(app.db):
        if app.db.is_sqlite or migrate_first:
            migrate.upgrade(app.db)
        else:
            log.error(
                "database schema is not current; run `budgetd migrate` first",
                extra={"fields": {"want": migrate.HEAD_REVISION}},
            )
            return 2
    if settings.admin_token is None:
        log.warning("BUDGETD_ADMIN_TOKEN is not set: management RPCs accept every caller")
    if settings.metrics_addr:
        host, _, port = settings.metrics_addr.rpartition(":")
        start_http_server(int(port), addr=host or "0.0.0.0")
    asyncio.run(serve(app, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
