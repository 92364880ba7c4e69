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
    fail_open: bool = Field(
        False,
        validation_alias=AliasChoices("fail_open", "SHIM_FAIL_OPEN"),
        description="Serve calls unmetered when budgetd is unreachable (default: refuse, 503)",
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
    log_level: str = Field(
        "INFO",
        validation_alias=AliasChoices("log_level", "SHIM_LOG_LEVEL"),
        description="Python logging level",
    )

    @property
    def host(self) -> str:
        """The host part of ``addr``."""
        return self.addr.rpartition(":")[0] or "127.0.0.1"

    @property
    def port(self) -> int:
        """The port part of ``addr``."""
        return int(self.addr.rpartition(":")[2])
