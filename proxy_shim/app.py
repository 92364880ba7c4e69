"""``create_app``: the one place where the shim is wired together.

The lifespan opens the long-lived resources (one gRPC channel to budgetd, one pooled
``httpx.AsyncClient`` toward upstreams, the charge outbox and its sender) and closes them after
draining the settlements still in flight and flushing the outbox for a bounded time
(``SHIM_OUTBOX_DRAIN_SECONDS``), so a SIGTERM during a stream does not lose its charge; what
budgetd has not acknowledged by then stays in the outbox file for the next start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from httpx_aiohttp import HttpxAiohttpClient

from proxy_shim import errors
from proxy_shim.budgetd_client import BudgetdClient, channel_credentials
from proxy_shim.config import ShimConfig, load_config
from proxy_shim.gate import Gate
from proxy_shim.keys import KeyRing
from proxy_shim.outbox import Outbox
from proxy_shim.request_limits import RequestLimits
from proxy_shim.routes import audit, budgets, chat, customers, health, spend
from proxy_shim.settings import ShimSettings
from proxy_shim.state import ShimState
from proxy_shim.ui import routes as ui


class StartupError(RuntimeError):
    """The shim cannot start with these settings; the message says why."""


def create_app(settings: ShimSettings, config: ShimConfig | None = None) -> FastAPI:
    """The FastAPI app. Raises StartupError (no master key) or ConfigError (bad config)."""
    if settings.master_key is None or not settings.master_key.get_secret_value():
        raise StartupError("BUDGETD_MASTER_KEY is not set: the shim refuses to run without a key")
    resolved = config or load_config(settings.config)
    keys = KeyRing(settings.master_key.get_secret_value(), resolved.client_keys)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        token = settings.admin_token.get_secret_value() if settings.admin_token else None
        gateway = settings.gateway_token.get_secret_value() if settings.gateway_token else None
        budgetd = BudgetdClient(
            settings.budgetd_addr,
            deadline=settings.budgetd_deadline_seconds,
            admin_token=token,
            gateway_token=gateway,
            credentials=channel_credentials(
                settings.budgetd_tls_ca_file,
                settings.budgetd_tls_cert_file,
                settings.budgetd_tls_key_file,
            ),
        )
        # httpx's API over aiohttp's connections (httpx-aiohttp, as the OpenAI SDK offers):
        # httpx's own transport (httpcore, h11) cost about 1 ms of CPU per upstream call, the
        # largest share of the shim's; aiohttp's C parser about a fifth of that.
        http = HttpxAiohttpClient(
            timeout=httpx.Timeout(settings.upstream_timeout_seconds, connect=10.0),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
        )
        outbox = Outbox(
            settings.outbox_path,
            budgetd,
            # The call's own RecordSpend attempt ends within its deadline; then the sender may.
            grace_seconds=settings.budgetd_deadline_seconds + 1.0,
            pause_file=settings.test_pause_before_record,
        )
        await outbox.open()
        outbox.start_sender()
        gate = Gate(budgetd, settings, outbox)
        app.state.shim = ShimState(settings, resolved, keys, budgetd, gate, http)
        try:
            yield
        finally:
            await gate.drain()
            await outbox.flush(settings.outbox_drain_seconds)
            await outbox.close()
            await http.aclose()
            await budgetd.close()

    app = FastAPI(
        title="budgetd proxy shim",
        description="OpenAI-compatible, LiteLLM-compatible gateway metered by budgetd",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        responses=errors.ERROR_RESPONSES,
    )
    errors.install(app)
    app.add_middleware(
        RequestLimits,
        max_header_bytes=settings.max_header_bytes,
        max_body_bytes=settings.max_body_bytes,
        body_idle_seconds=settings.body_timeout_seconds,
    )
    for module in (chat, customers, budgets, spend, audit, health, ui):
        app.include_router(module.router)
    return app
