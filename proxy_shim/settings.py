"""The shim's settings: one object, read once from flags and environment variables.

The shim shares some variable names with budgetd on purpose (``BUDGETD_MASTER_KEY``,
``BUDGETD_ADMIN_TOKEN``) so that ``budgetd up`` and a compose file can set them once for both.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ShimSettings(BaseSettings):
    """Every knob of the shim. Environment: ``SHIM_<NAME>`` unless an alias says otherwise."""

    model_config = SettingsConfigDict(env_prefix="SHIM_", extra="ignore", populate_by_name=True)

    addr: str = Field(
        "127.0.0.1:4000",
        validation_alias=AliasChoices("addr", "SHIM_ADDR"),
        description="HTTP listen address host:port",
    )
    config: Path | None = Field(
        None,
        validation_alias=AliasChoices("config", "SHIM_CONFIG"),
        description="YAML file of models and client keys (default: the packaged quick-start file)",
    )
    budgetd_addr: str = Field(
        "127.0.0.1:50051",
        validation_alias=AliasChoices("budgetd_addr", "BUDGETD_ADDR"),
        description="budgetd's gRPC address",
    )
    master_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("master_key", "BUDGETD_MASTER_KEY"),
        description="The proxy key (Bearer) that may call every route",
    )
    admin_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("admin_token", "BUDGETD_ADMIN_TOKEN"),
        description="The shim's credential toward budgetd's management RPCs",
    )
    gateway_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("gateway_token", "BUDGETD_GATEWAY_TOKEN"),
        description="The shim's credential toward budgetd's Authorize, RecordSpend and "
        "ReleaseReservation, when budgetd requires one",
    )
    budgetd_tls_ca_file: Path | None = Field(
        None,
        validation_alias=AliasChoices("budgetd_tls_ca_file", "SHIM_BUDGETD_TLS_CA_FILE"),
        description="CA that signed budgetd's certificate: talk to budgetd over TLS",
    )
    budgetd_tls_cert_file: Path | None = Field(
        None,
        validation_alias=AliasChoices("budgetd_tls_cert_file", "SHIM_BUDGETD_TLS_CERT_FILE"),
        description="The shim's client certificate, for a budgetd that requires mTLS",
    )
    budgetd_tls_key_file: Path | None = Field(
        None,
        validation_alias=AliasChoices("budgetd_tls_key_file", "SHIM_BUDGETD_TLS_KEY_FILE"),
        description="The key of the shim's client certificate",
    )
    fail_open: bool = Field(
        False,
        validation_alias=AliasChoices("fail_open", "SHIM_FAIL_OPEN"),
        description="Serve calls without a reservation when budgetd is unreachable, queueing "
        "their charges in the outbox (default: refuse, 503)",
    )
    require_customer_id: bool = Field(
        False,
        validation_alias=AliasChoices("require_customer_id", "SHIM_REQUIRE_CUSTOMER_ID"),
        description="Refuse (400) model calls that name no customer",
    )
    cap_output_to_budget: bool = Field(
        True,
        validation_alias=AliasChoices("cap_output_to_budget", "SHIM_CAP_OUTPUT_TO_BUDGET"),
        description="Inject max_tokens = what the customer can still afford, for uncapped calls",
    )
    budgetd_deadline_seconds: float = Field(
        2.0,
        gt=0,
        validation_alias=AliasChoices("budgetd_deadline_seconds", "SHIM_BUDGETD_DEADLINE_SECONDS"),
        description="Deadline of every gRPC call to budgetd",
    )
    upstream_timeout_seconds: float = Field(
        600.0,
        gt=0,
        validation_alias=AliasChoices("upstream_timeout_seconds", "SHIM_UPSTREAM_TIMEOUT_SECONDS"),
        description="Read timeout toward upstreams (long answers stream slowly)",
    )
    default_max_output_tokens: int = Field(
        4096,
        gt=0,
        validation_alias=AliasChoices(
            "default_max_output_tokens", "SHIM_DEFAULT_MAX_OUTPUT_TOKENS"
        ),
        description="Output reserved for an uncapped call when neither config nor prices know",
    )
    outbox_path: Path = Field(
        Path("shim-outbox.db"),
        validation_alias=AliasChoices("outbox_path", "SHIM_OUTBOX_PATH"),
        description="SQLite file of charges not yet acknowledged by budgetd (one per shim)",
    )
    outbox_drain_seconds: float = Field(
        5.0,
        ge=0,
        validation_alias=AliasChoices("outbox_drain_seconds", "SHIM_OUTBOX_DRAIN_SECONDS"),
        description="At shutdown, how long to keep delivering the outbox before exiting",
    )
    test_pause_before_record: Path | None = Field(
        None,
        validation_alias=AliasChoices("test_pause_before_record", "SHIM_TEST_PAUSE_BEFORE_RECORD"),
        description="TESTS ONLY: after a charge is written to the outbox and before RecordSpend, "
        "create this file and wait while it exists (so a test can kill -9 the shim there)",
    )
    log_level: str = Field(
        "INFO",
        validation_alias=AliasChoices("log_level", "SHIM_LOG_LEVEL"),
        description="Python logging level",
    )
    # -- TLS and limits against oversized and slow clients (proxy_shim.serving) --------------
    tls_cert_file: Path | None = Field(
        None,
        validation_alias=AliasChoices("tls_cert_file", "SHIM_TLS_CERT_FILE"),
        description="PEM certificate (chain) to serve HTTPS with; needs SHIM_TLS_KEY_FILE",
    )
    tls_key_file: Path | None = Field(
        None,
        validation_alias=AliasChoices("tls_key_file", "SHIM_TLS_KEY_FILE"),
        description="PEM private key of SHIM_TLS_CERT_FILE",
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024,
        gt=0,
        validation_alias=AliasChoices("max_body_bytes", "SHIM_MAX_BODY_BYTES"),
        description="Largest request body; a larger one is refused with 413 while it is read",
    )
    max_header_bytes: int = Field(
        16 * 1024,
        gt=0,
        validation_alias=AliasChoices("max_header_bytes", "SHIM_MAX_HEADER_BYTES"),
        description="Largest request line plus headers; a larger one is refused with 431",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        validation_alias=AliasChoices("header_timeout_seconds", "SHIM_HEADER_TIMEOUT_SECONDS"),
        description="A request's line and headers must arrive within this time of the "
        "connection (or the request's first byte); else the connection is closed",
    )
    body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        validation_alias=AliasChoices("body_timeout_seconds", "SHIM_BODY_TIMEOUT_SECONDS"),
        description="Longest wait for the next piece of a request body; else 408",
    )
    keep_alive_timeout_seconds: float = Field(
        5.0,
        gt=0,
        validation_alias=AliasChoices(
            "keep_alive_timeout_seconds", "SHIM_KEEP_ALIVE_TIMEOUT_SECONDS"
        ),
        description="How long an idle keep-alive connection stays open between requests",
    )

    @property
    def host(self) -> str:
        """The host part of ``addr``."""
        return self.addr.rpartition(":")[0] or "127.0.0.1"

    @property
    def port(self) -> int:
        """The port part of ``addr``."""
        return int(self.addr.rpartition(":")[2])
