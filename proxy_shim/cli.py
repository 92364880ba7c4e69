"""The ``proxy-shim`` command: ``serve`` (the shim) and ``fake-upstream`` (offline upstream)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import uvicorn

from budgetd import logs
from proxy_shim.config import ConfigError
from proxy_shim.settings import ShimSettings

log = logging.getLogger("proxy_shim")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = argparse.ArgumentParser(prog="proxy-shim", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the OpenAI/LiteLLM-compatible shim")
    serve.add_argument("--addr", help="overrides SHIM_ADDR (host:port)")
    serve.add_argument("--config", help="overrides SHIM_CONFIG (YAML models file)")
    serve.add_argument("--budgetd-addr", help="overrides BUDGETD_ADDR")
    serve.add_argument("--outbox-path", help="overrides SHIM_OUTBOX_PATH (charge outbox file)")
    serve.add_argument(
        "--fail-open",
        action="store_true",
        default=None,
        help="serve calls when budgetd is unreachable, queueing their charges in the outbox "
        "(default: refuse with 503)",
    )
    serve.add_argument(
        "--require-customer-id",
        action="store_true",
        default=None,
        help="refuse model calls that name no customer (default: serve them unmetered)",
    )
    serve.add_argument(
        "--no-cap-output-to-budget",
        dest="cap_output_to_budget",
        action="store_false",
        default=None,
        help="refuse uncapped calls the budget cannot cover instead of injecting max_tokens",
    )
    fake = sub.add_parser("fake-upstream", help="run the built-in fake OpenAI upstream")
    fake.add_argument("--addr", default="127.0.0.1:4001", help="host:port (default %(default)s)")
    fake.add_argument(
        "--answer-tokens", type=int, default=24, help="answer length in tokens (default 24)"
    )
    fake.add_argument(
        "--chunk-delay", type=float, default=0.0, help="seconds between stream chunks"
    )
    args = parser.parse_args(argv)
    if args.command == "fake-upstream":
        return _fake_upstream(args)
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    overrides = {
        key: value
        for key, value in vars(args).items()
        if key in ShimSettings.model_fields and value is not None
    }
    settings = ShimSettings(**overrides)
    logs.configure(settings.log_level)
    # httpx logs every upstream request at INFO; the shim's own call line already covers it.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from proxy_shim.app import StartupError, create_app
    from proxy_shim.serving import uvicorn_options

    try:
        app = create_app(settings)
        served = uvicorn_options(settings)
    except (ConfigError, StartupError) as error:
        log.error("cannot start: %s", error)
        return 2
    if settings.fail_open:
        log.warning(
            "--fail-open: while budgetd is unreachable calls are served without a reservation "
            "(budgets not enforced); their charges wait in the outbox until it is back"
        )
    log.info(
        "serving",
        extra={
            "fields": {
                "addr": settings.addr,
                "budgetd_addr": settings.budgetd_addr,
                "tls": settings.tls_cert_file is not None,
            }
        },
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        **served,
    )
    return 0


def _fake_upstream(args: argparse.Namespace) -> int:
    from proxy_shim.fake_upstream import create_fake_upstream

    logs.configure("INFO")
    host, _, port = args.addr.rpartition(":")
    app = create_fake_upstream(answer_tokens=args.answer_tokens, chunk_delay=args.chunk_delay)
    log.info("fake upstream serving", extra={"fields": {"addr": args.addr}})
    uvicorn.run(app, host=host or "127.0.0.1", port=int(port), log_config=None, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
