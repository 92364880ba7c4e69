"""The ext_proc servicer driven phase by phase, over a stand-in for the domain."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from budgetd.domain.records import Decision, DenialReason
from budgetd.domain.spend import CallEstimate, SpendReport
from budgetd.envoy.ext_proc import ExternalProcessorServicer
from budgetd.envoy.options import EnvoyOptions
from budgetd.pricing import TokenUsage


def _decision(allowed: bool = True) -> Decision:
    return Decision(
        allowed=allowed,
        denial_reason=None if allowed else DenialReason.BUDGET_EXCEEDED,
        message="" if allowed else "over budget",
        reservation_id="res-1" if allowed else None,
        held_nanos=900 if allowed else 0,
        spend_nanos=0,
        reserved_nanos=900 if allowed else 0,
        max_budget_nanos=10_000,
    )


class Spend:
    """Records what the servicer asks of the domain; Authorize can be made slow."""

    def __init__(self, decision: Decision, authorize_delay: float = 0.0) -> None:
        self.decision = decision
        self.authorize_delay = authorize_delay
        self.estimates: list[CallEstimate] = []
        self.reports: list[SpendReport] = []
        self.released: list[str] = []
        self.ended = threading.Event()

    def authorize(self, call: CallEstimate) -> Decision:
        time.sleep(self.authorize_delay)
        self.estimates.append(call)
        return self.decision

    def record_spend(self, report: SpendReport) -> object:
        self.reports.append(report)
        self.ended.set()

        class Charge:
            class entry:
                cost_nanos = 1

        return Charge()

    def release(self, reservation_id: str) -> int:
        self.released.append(reservation_id)
        self.ended.set()
        return 900


class Context:
    def set_code(self, code: object) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


def _headers(pairs: dict[str, str], end: bool = False) -> pb.HttpHeaders:
    return pb.HttpHeaders(
        headers=base_pb2.HeaderMap(
            headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()]
        ),
        end_of_stream=end,
    )


BODY = {
    "model": "gpt-4o-mini",
    "user": "alice",
    "stream": True,
    "messages": [{"role": "user", "content": "abcdef"}],
}
USAGE = {"prompt_tokens": 11, "completion_tokens": 5}


def _request_phases() -> list[pb.ProcessingRequest]:
    return [
        pb.ProcessingRequest(request_headers=_headers({":method": "POST", "x-a": "b"})),
        pb.ProcessingRequest(
            request_body=pb.HttpBody(body=json.dumps(BODY).encode(), end_of_stream=True)
        ),
    ]


def _response_phases(status: str = "200") -> list[pb.ProcessingRequest]:
    stream = (
        b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n'
        + f"data: {json.dumps({'choices': [], 'usage': USAGE})}\n\ndata: [DONE]\n\n".encode()
    )
    first = stream.index(b"\n\n") + 2  # the first event, complete
    return [
        pb.ProcessingRequest(
            response_headers=_headers({":status": status, "content-type": "text/event-stream"})
        ),
        pb.ProcessingRequest(response_body=pb.HttpBody(body=stream[:first])),
        pb.ProcessingRequest(response_body=pb.HttpBody(body=stream[first:], end_of_stream=True)),
    ]


async def _requests(
    items: Iterable[pb.ProcessingRequest], hang: bool = False
) -> AsyncIterator[pb.ProcessingRequest]:
    for item in items:
        yield item
    if hang:
        await asyncio.sleep(3600)


def _drive(spend: Spend, requests: Iterable[pb.ProcessingRequest]) -> list[Any]:
    async def run() -> list[Any]:
        with ThreadPoolExecutor(2) as pool:
            servicer = ExternalProcessorServicer(spend, EnvoyOptions(), pool)  # type: ignore[arg-type]
            return [r async for r in servicer.Process(_requests(requests), Context())]  # type: ignore[arg-type]

    return asyncio.run(run())


def test_a_streamed_call_is_admitted_rewritten_and_charged_its_usage() -> None:
    spend = Spend(_decision())

    replies = _drive(spend, _request_phases() + _response_phases())

    kinds = [r.WhichOneof("response") for r in replies]
    assert kinds == [
        "request_headers",
        "request_body",
        "response_headers",
        "response_body",
        "response_body",
    ]
    admitted = replies[1].request_body.response
    added = {
        h.header.key: h.header.raw_value.decode() for h in admitted.header_mutation.set_headers
    }
    rewritten = json.loads(admitted.body_mutation.body)
    assert added["x-budgetd-reservation-id"] == "res-1"
    assert added["content-length"] == str(len(admitted.body_mutation.body))
    assert rewritten["stream_options"] == {"include_usage": True}
    # Response chunks pass untouched.
    assert not replies[3].response_body.response.HasField("body_mutation")
    assert spend.estimates[0].customer_id == "alice"
    (report,) = spend.reports
    assert (report.reservation_id, report.model) == ("res-1", "gpt-4o-mini")
    assert report.usage == TokenUsage(input_tokens=11, output_tokens=5)
    assert spend.released == []


def test_a_refusal_is_an_immediate_response_and_takes_nothing() -> None:
    spend = Spend(_decision(allowed=False))

    replies = _drive(spend, _request_phases())

    immediate = replies[-1].immediate_response
    assert immediate.status.code == 429
    assert json.loads(immediate.body)["error"]["type"] == "budget_exceeded"
    assert spend.reports == [] and spend.released == []


def test_an_upstream_error_releases_at_the_response_headers() -> None:
    spend = Spend(_decision())

    _drive(spend, _request_phases() + _response_phases(status="503")[:1])

    assert spend.released == ["res-1"]
    assert spend.reports == []


def test_a_stream_cut_after_some_output_is_charged_an_estimate() -> None:
    spend = Spend(_decision())

    _drive(spend, _request_phases() + _response_phases()[:2])

    assert spend.ended.wait(5)
    (report,) = spend.reports
    # 6 prompt characters and "hi" at 3 characters a token.
    assert report.usage == TokenUsage(input_tokens=2, output_tokens=1)


@pytest.mark.parametrize("cancel_after", [0.05, 0.3])
def test_a_cancelled_stream_never_leaves_its_hold(cancel_after: float) -> None:
    # 0.05 s: cancelled while Authorize runs; 0.3 s: after admission, before any answer.
    spend = Spend(_decision(), authorize_delay=0.2)

    async def run() -> None:
        with ThreadPoolExecutor(2) as pool:
            servicer = ExternalProcessorServicer(spend, EnvoyOptions(), pool)  # type: ignore[arg-type]

            async def consume() -> None:
                requests = _requests(_request_phases(), hang=True)
                async for _ in servicer.Process(requests, Context()):  # type: ignore[arg-type]
                    pass

            task = asyncio.create_task(consume())
            await asyncio.sleep(cancel_after)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.to_thread(spend.ended.wait, 5)

    asyncio.run(run())

    assert spend.released == ["res-1"]
    assert spend.reports == []
