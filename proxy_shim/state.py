"""The objects every route shares, built once by ``app.create_app`` and kept on ``app.state``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Request

from budgetd.domain.actors import fingerprint
from proxy_shim.budgetd_client import BudgetdClient
from proxy_shim.config import ShimConfig
from proxy_shim.gate import Gate
from proxy_shim.keys import KeyRing, bearer_token
from proxy_shim.settings import ShimSettings


@dataclass
class ShimState:
    """Long-lived resources: one gRPC channel and one pooled HTTP client per process."""

    settings: ShimSettings
    config: ShimConfig
    keys: KeyRing
    budgetd: BudgetdClient
    gate: Gate
    http: httpx.AsyncClient


# The dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its
# thread pool, a thread hop on every request for a dictionary lookup.


async def shim_state(request: Request) -> ShimState:
    """The shared state, as a FastAPI dependency."""
    state: ShimState = request.app.state.shim
    return state


async def admin_state(request: Request) -> ShimState:
    """The shared state, for routes that need the master key.

    Its budgetd client names the caller to budgetd's audit trail by the fingerprint of the key
    it presented (``key:<16 hex>``), never the key.
    """
    state: ShimState = request.app.state.shim
    state.keys.require(request, admin=True)
    actor = fingerprint(bearer_token(request) or "", "key")
    return dataclasses.replace(state, budgetd=state.budgetd.acting_for(actor))


# Dependency-typed parameters for routes.
Shared = Annotated[ShimState, Depends(shim_state)]
Admin = Annotated[ShimState, Depends(admin_state)]
