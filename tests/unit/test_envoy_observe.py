"""The asyncio form of the Envoy servicers' answer-or-abort wrapper."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from budgetd.envoy.observe import CallRecord, answered_async
from budgetd.errors import Unavailable


class _Aborted(Exception):
    pass


class _Context:
    """Just enough of grpc.aio's ServicerContext: abort records the status and raises."""

    def __init__(self) -> None:
        self.status: tuple[grpc.StatusCode, str] | None = None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.status = (code, details)
        raise _Aborted


async def _value(value: Any) -> Any:
    return value


async def _fail(error: Exception) -> Any:
    raise error


def test_an_answer_is_returned() -> None:
    context = _Context()
    answer = asyncio.run(answered_async(CallRecord("/m"), context, _value("ok")))  # type: ignore[arg-type]
    assert answer == "ok"
    assert context.status is None


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            Unavailable("store unavailable: down"),
            (grpc.StatusCode.UNAVAILABLE, "store unavailable: down"),
        ),
        (RuntimeError("secret detail"), (grpc.StatusCode.INTERNAL, "internal error")),
    ],
)
def test_errors_abort_with_their_status_and_no_internal_detail(
    error: Exception, expected: tuple[grpc.StatusCode, str]
) -> None:
    context = _Context()
    with pytest.raises(_Aborted):
        asyncio.run(answered_async(CallRecord("/m"), context, _fail(error)))  # type: ignore[arg-type]
    assert context.status == expected
