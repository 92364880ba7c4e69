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
    workers: int = Field(16, gt=0, description="Threads (and database connections) for RPCs")
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", description="FULL: a charge survives power loss; NORMAL: only a crash"
    )
    max_message_bytes: int = Field(4 * 1024 * 1024, gt=0, description="gRPC message size cap")
    shutdown_grace_seconds: float = Field(
        10.0, ge=0, description="How long SIGTERM waits for in-flight calls"
    )
    log_level: str = Field("INFO", description="Python logging level")
