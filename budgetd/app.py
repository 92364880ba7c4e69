"""Wiring: settings in, the database and domain services out. The one place they meet."""

from __future__ import annotations

from dataclasses import dataclass

from budgetd.clock import Clock, FileClock, SystemClock
from budgetd.domain.alerts import AlertSender
from budgetd.domain.audit import AuditService
from budgetd.domain.budgets import BudgetService
from budgetd.domain.customers import CustomerService
from budgetd.domain.rate_limits import RateLimitService
from budgetd.domain.spend import SpendPolicy, SpendService
from budgetd.domain.windows import zone
from budgetd.pricing import PriceTable
from budgetd.settings import Settings
from budgetd.store.database import Database


@dataclass(frozen=True, slots=True)
class Budgetd:
    """The domain, ready to serve."""

    db: Database
    customers: CustomerService
    budgets: BudgetService
    spend: SpendService
    rate_limits: RateLimitService
    audit: AuditService
    alerts: AlertSender | None = None


def build(settings: Settings, clock: Clock | None = None) -> Budgetd:
    """Connect the store and build the domain services from settings."""
    if clock is None:
        clock = FileClock(settings.clock_file) if settings.clock_file else SystemClock()
    db = Database.connect(
        settings.database_url,
        pool_size=settings.workers,
        sqlite_synchronous=settings.sqlite_synchronous,
        timeout_s=settings.store_timeout_seconds,
    )
    prices = PriceTable.from_file(settings.prices_file) if settings.prices_file else PriceTable()
    zone(settings.time_zone, "BUDGETD_TIME_ZONE")
    policy = SpendPolicy(
        hold_ttl_us=int(settings.hold_ttl_seconds * 1_000_000),
        default_max_output_tokens=settings.default_max_output_tokens,
        chars_per_token=settings.chars_per_token,
        default_budget_id=settings.default_budget_id or None,
        time_zone=settings.time_zone,
    )
    spend = SpendService(db, prices, clock, policy)
    alerts = None
    if settings.soft_budget_webhook_url:
        alerts = AlertSender(db, clock, settings.soft_budget_webhook_url)
    return Budgetd(
        db=db,
        customers=CustomerService(db, clock, settings.time_zone),
        budgets=BudgetService(db, clock),
        spend=spend,
        rate_limits=RateLimitService(db, clock, spend, policy),
        audit=AuditService(db),
        alerts=alerts,
    )
