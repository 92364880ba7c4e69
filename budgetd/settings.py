"""budgetd's settings: one object, read once from flags and ``BUDGETD_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the daemon. Environment: ``BUDGETD_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="BUDGETD_", extra="ignore")

    database_url: str = Field(
        "sqlite:///budgetd.db",
        description="SQLAlchemy URL: sqlite:///file.db (embedded) or postgresql://... (replicas)",
    )
    grpc_addr: str = Field("127.0.0.1:50051", description="gRPC listen address")
    metrics_addr: str = Field(
        "127.0.0.1:9464", description="Prometheus listen address; empty disables it"
    )
    admin_token: SecretStr | None = Field(
        None, description="Bearer token that management RPCs require"
    )
    prices_file: Path | None = Field(None, description="YAML file of price overrides and additions")
    hold_ttl_seconds: float = Field(600.0, gt=0, description="How long an unsettled hold lives")
    expiry_interval_seconds: float = Field(
        10.0, gt=0, description="How often expired holds are swept"
    )
    default_max_output_tokens: int = Field(
        4096, gt=0, description="Output estimate when neither call nor model names a limit"
    )
    chars_per_token: int = Field(3, gt=0, description="Prompt characters per estimated token")
    workers: int = Field(
        16,
        gt=0,
        description="Threads for management RPCs, database connections and PostgreSQL lanes",
    )
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", description="FULL: a charge survives power loss; NORMAL: only a crash"
    )
    max_message_bytes: int = Field(
        4 * 1024 * 1024, gt=0, description="gRPC message size cap; larger: RESOURCE_EXHAUSTED"
    )
    shutdown_grace_seconds: float = Field(
        10.0, ge=0, description="How long SIGTERM waits for in-flight calls"
    )
    log_level: str = Field("INFO", description="Python logging level")
    default_budget_id: str | None = Field(
        None, description="Tier that customers created on first use are put on"
    )
    time_zone: str = Field(
        "UTC", description="Zone of calendar-aligned windows when a budget names none"
    )
    soft_budget_webhook_url: str | None = Field(
        None, description="URL that soft-budget alerts are POSTed to (JSON); unset disables"
    )
    clock_file: Path | None = Field(
        None, description="TESTS ONLY: read the current time from this file (microseconds)"
    )
    alert_interval_seconds: float = Field(
        1.0, gt=0, description="How often pending alerts are sent"
    )

    # -- outages and security (budgetd.store.health, budgetd.api.gateway, budgetd.api.tls) ---
    store_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="Longest any store work may take (connect, pool wait, statement, lock wait), "
        "shortened further by each call's deadline",
    )
    store_check_interval_seconds: float = Field(
        1.0,
        gt=0,
        description="How often the store is probed with SELECT 1, which must answer within the "
        "interval (and the store timeout); while it fails, health is NOT_SERVING and calls "
        "fail fast with UNAVAILABLE",
    )
    gateway_token: SecretStr | None = Field(
        None,
        description="Bearer token that Authorize, RecordSpend, ReleaseReservation and the Envoy "
        "services require (the admin token is accepted too); unset = open",
    )
    tls_cert_file: Path | None = Field(None, description="PEM certificate (chain): serve TLS")
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file")
    tls_client_ca_file: Path | None = Field(
        None, description="PEM CA bundle: require client certificates it signed (mTLS)"
    )

    # -- Envoy ext_authz / ext_proc (budgetd.envoy) ------------------------------------------
    envoy_customer_headers: str = Field(
        "x-litellm-customer-id,x-litellm-end-user-id",
        description="Comma-separated request headers naming the customer, first match wins; "
        "then the JSON body's user, then metadata.user_id",
    )
    envoy_require_customer: bool = Field(
        True, description="Refuse (400) calls naming no customer; false lets them pass unmetered"
    )
    envoy_default_estimate_nanos: int = Field(
        50_000_000, ge=0, description="Hold taken for a call whose model Envoy did not show"
    )
    envoy_stream_include_usage: bool = Field(
        True, description="ext_proc asks streamed chat calls for a final usage chunk"
    )

    # -- Envoy rate limit service (budgetd.envoy.ratelimit) ----------------------------------
    ratelimit_unit: Literal["tokens", "nanos"] = Field(
        "tokens",
        description="What a rate limit hit is: a token of the customer's tpm window, or a "
        "nano-USD charged to its budget (a ledger entry)",
    )
    ratelimit_descriptor_keys: str = Field(
        "customer_id",
        description="Comma-separated rate limit descriptor entry keys whose value names the "
        "customer, first match wins",
    )
