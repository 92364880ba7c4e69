"""Operations: liveness, readiness (budgetd reachable) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy_shim.state import Shared

router = APIRouter(tags=["health"])


@router.get("/health")
@router.get("/health/liveliness")
@router.get("/health/liveness")
async def liveness() -> JSONResponse:
    """The process answers; says nothing about budgetd."""
    return JSONResponse({"status": "healthy"})


@router.get("/health/readiness")
async def readiness(state: Shared) -> JSONResponse:
    """Ready when budgetd answers its health check (or when failing open)."""
    serving = await state.budgetd.serving()
    body = {
        "status": "healthy" if serving else "unhealthy",
        "budgetd": "connected" if serving else "unreachable",
        "fail_open": state.settings.fail_open,
    }
    ready = serving or state.settings.fail_open
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics() -> Response:
    """Prometheus metrics of this process."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
