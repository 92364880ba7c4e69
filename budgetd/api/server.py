"""The gRPC server: budgetd.v1 services, grpc.health.v1, reflection and Prometheus metrics.

The hot methods (Authorize, RecordSpend, ReleaseReservation, Envoy's ext_proc) are asyncio
handlers that run their domain call through the store (``Database.submit_async``) — on SQLite
its writer thread, on PostgreSQL the customer's lane (see ``budgetd.store.group_commit``). The
other RPC handlers are synchronous (the domain runs blocking SQL); grpc.aio runs them on the
``migration_thread_pool``. Health and reflection are asyncio handlers on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from budgetd.api import tls
from budgetd.api.actor import Actors
from budgetd.api.audit_servicer import AuditServicer
from budgetd.api.auth import AdminAuth, GatewayAuth
from budgetd.api.budget_servicer import BudgetServicer
from budgetd.api.customer_servicer import CustomerServicer
from budgetd.api.gateway import GatewayTokenInterceptor, method_paths
from budgetd.api.guard import GuardedServicer
from budgetd.api.spend_servicer import ADMIN_METHODS as SPEND_ADMIN_METHODS
from budgetd.api.spend_servicer import HOT_METHODS as SPEND_HOT_METHODS
from budgetd.api.spend_servicer import SpendServicer
from budgetd.app import Budgetd
from budgetd.envoy import authz as envoy_authz
from budgetd.envoy import ext_proc as envoy_ext_proc
from budgetd.envoy import ratelimit as envoy_ratelimit
from budgetd.envoy.options import EnvoyOptions
from budgetd.errors import Unavailable
from budgetd.settings import Settings
from budgetd.store.health import StoreHealth
from budgetd.v1 import (
    audit_service_pb2,
    budget_service_pb2,
    customer_service_pb2,
    spend_service_pb2,
)
from budgetd.v1 import audit_service_pb2_grpc as audit_grpc
from budgetd.v1 import budget_service_pb2_grpc as budget_grpc
from budgetd.v1 import customer_service_pb2_grpc as customer_grpc
from budgetd.v1 import spend_service_pb2_grpc as spend_grpc

log = logging.getLogger("budgetd.server")

SPEND = spend_service_pb2.DESCRIPTOR.services_by_name["SpendService"]
CUSTOMERS = customer_service_pb2.DESCRIPTOR.services_by_name["CustomerService"]
BUDGETS = budget_service_pb2.DESCRIPTOR.services_by_name["BudgetService"]
AUDIT = audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"]
SERVICE_NAMES = (SPEND.full_name, CUSTOMERS.full_name, BUDGETS.full_name, AUDIT.full_name)
# Envoy's ext_authz, ext_proc and rate limit service APIs over the same domain (budgetd.envoy).
ENVOY_SERVICE_NAMES = (
    envoy_authz.DESCRIPTOR.full_name,
    envoy_ext_proc.DESCRIPTOR.full_name,
    envoy_ratelimit.DESCRIPTOR.full_name,
)
# The gateway's hot path: what BUDGETD_GATEWAY_TOKEN guards (budgetd.api.gateway).
GATEWAY_METHODS = method_paths(
    [
        (SPEND, SPEND_ADMIN_METHODS),
        (envoy_authz.DESCRIPTOR, ()),
        (envoy_ext_proc.DESCRIPTOR, ()),
        (envoy_ratelimit.DESCRIPTOR, ()),
    ]
)


@dataclass(frozen=True, slots=True)
class Registration:
    """A guarded servicer and the generated function that adds it to a server."""

    descriptor: Any
    servicer: object
    add_to_server: Callable[[Any, Any], None]


def registrations(app: Budgetd, auth: AdminAuth, *, hot_async: bool = False) -> list[Registration]:
    """Every budgetd.v1 servicer, wrapped by the guard; used by the server and by tests.

    With ``hot_async`` (the server), the hot methods become asyncio handlers run through the
    store's ``Database.submit_async``; without (grpc_testing, which calls handlers synchronously)
    all stay synchronous.
    """
    every = frozenset(m.name for service in (CUSTOMERS, BUDGETS, AUDIT) for m in service.methods)
    actors = Actors(auth)
    return [
        Registration(
            SPEND,
            GuardedServicer(
                SpendServicer(app.spend),
                SPEND,
                auth,
                SPEND_ADMIN_METHODS,
                hot_methods=SPEND_HOT_METHODS,
                submit=app.db.submit_async if hot_async else None,
            ),
            spend_grpc.add_SpendServiceServicer_to_server,
        ),
        Registration(
            CUSTOMERS,
            GuardedServicer(CustomerServicer(app.customers, actors), CUSTOMERS, auth, every),
            customer_grpc.add_CustomerServiceServicer_to_server,
        ),
        Registration(
            BUDGETS,
            GuardedServicer(BudgetServicer(app.budgets, actors), BUDGETS, auth, every),
            budget_grpc.add_BudgetServiceServicer_to_server,
        ),
        Registration(
            AUDIT,
            GuardedServicer(AuditServicer(app.audit), AUDIT, auth, every),
            audit_grpc.add_AuditServiceServicer_to_server,
        ),
    ]


def envoy_registrations(app: Budgetd, settings: Settings) -> list[Registration]:
    """Envoy's ext_authz and ext_proc (asyncio, their domain work on the store's writer or
    lanes) and rate limit service (sync, on the thread pool) servicers.

    None needs the admin token: like Authorize, they are the gateway's hot path. ext_proc
    runs its blocking domain calls on the store's executor (``Database.executor``).
    """
    options = EnvoyOptions.from_settings(settings)
    return [
        Registration(
            envoy_authz.DESCRIPTOR,
            envoy_authz.AsyncAuthorizationServicer(app.spend, options, app.db.submit_async),
            envoy_authz.add_to_server,
        ),
        Registration(
            envoy_ext_proc.DESCRIPTOR,
            envoy_ext_proc.ExternalProcessorServicer(app.spend, options, app.db.executor),
            envoy_ext_proc.add_to_server,
        ),
        Registration(
            envoy_ratelimit.DESCRIPTOR,
            envoy_ratelimit.RateLimitServicer(
                app.rate_limits,
                envoy_ratelimit.RateLimitOptions.from_settings(settings),
            ),
            envoy_ratelimit.add_to_server,
        ),
    ]


class Server:
    """A running budgetd: the gRPC server plus its background sweeper."""

    def __init__(self, app: Budgetd, settings: Settings) -> None:
        self._app = app
        self._settings = settings
        self._executor = ThreadPoolExecutor(settings.workers, thread_name_prefix="rpc")
        token = settings.admin_token.get_secret_value() if settings.admin_token else None
        admin = AdminAuth(token)
        gateway = GatewayAuth(
            settings.gateway_token.get_secret_value() if settings.gateway_token else None, admin
        )
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if gateway.enabled:  # only a configured token costs an interceptor call per RPC
            interceptors.append(GatewayTokenInterceptor(gateway, GATEWAY_METHODS))
        self._server = grpc.aio.server(
            migration_thread_pool=self._executor,
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", settings.max_message_bytes),
            ],
        )
        self.health = health.aio.HealthServicer()
        for reg in registrations(app, admin, hot_async=True):
            reg.add_to_server(reg.servicer, self._server)
        for reg in envoy_registrations(app, settings):
            reg.add_to_server(reg.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, *ENVOY_SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME),
            self._server,
        )
        credentials = tls.server_credentials(settings)
        if credentials is None:
            self.port = self._server.add_insecure_port(settings.grpc_addr)
        else:
            self.port = self._server.add_secure_port(settings.grpc_addr, credentials)
        if not self.port:
            raise OSError(f"cannot listen on {settings.grpc_addr}")
        # Sweeps and webhooks run on threads of their own, so a slow webhook never takes an
        # RPC's thread. One per job (each job awaits its previous round): a webhook hanging
        # until its timeout must not hold up hold expiry either.
        self._background = ThreadPoolExecutor(2, thread_name_prefix="background")
        self._tasks: list[asyncio.Task[None]] = []
        # Health follows the store's: NOT_SERVING while it does not answer (budgetd.store.health).
        self.store = StoreHealth(app.db, settings.store_check_interval_seconds, self._store_changed)
        self._reports: set[asyncio.Future[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Accept calls and report SERVING (NOT_SERVING while the store does not answer)."""
        await self._server.start()
        self._loop = asyncio.get_running_loop()
        await self._loop.run_in_executor(self._background, self.store.check)
        await self._report_health()
        self.store.start()
        jobs: list[tuple[float, Callable[[], object], str]] = [
            (self._settings.expiry_interval_seconds, self._app.spend.expire_due, "expiring holds")
        ]
        if self._app.alerts is not None:
            jobs.append(
                (self._settings.alert_interval_seconds, self._app.alerts.deliver_due, "alerts")
            )
        self._tasks = [asyncio.create_task(self._every(*job)) for job in jobs]

    async def stop(self) -> None:
        """Report NOT_SERVING, let in-flight calls finish within the grace period, close."""
        await self.health.enter_graceful_shutdown()
        for task in self._tasks:
            task.cancel()
        await self._server.stop(self._settings.shutdown_grace_seconds)
        self.store.stop()
        self._executor.shutdown(wait=True)
        self._background.shutdown(wait=True)
        if self._app.alerts is not None:
            self._app.alerts.close()
        self._app.db.dispose()

    def _store_changed(self, _up: bool) -> None:
        """From the health check's thread: report the store's new state on the event loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._schedule_health_report)

    def _schedule_health_report(self) -> None:
        report = asyncio.ensure_future(self._report_health())
        self._reports.add(report)
        report.add_done_callback(self._reports.discard)

    async def _report_health(self) -> None:
        # The latest state, whatever the order reports run in.
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self.store.up
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES, *ENVOY_SERVICE_NAMES):
            await self.health.set(name, status)

    async def _every(self, interval: float, job: Callable[[], object], what: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            try:
                await loop.run_in_executor(self._background, job)
            except Unavailable as error:  # an outage: the health check reports it
                log.warning("%s: %s; retrying next round", what, error.message)
            except Exception:
                log.exception("%s failed; retrying next round", what)


async def serve(app: Budgetd, settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    server = Server(app, settings)
    await server.start()
    log.info(
        "serving",
        extra={"fields": {"grpc_addr": settings.grpc_addr, "port": server.port}},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down", extra={"fields": {"grace_s": settings.shutdown_grace_seconds}})
    await server.stop()
