"""Reserve before, settle after: the shim's side of budgetd's hot path.

Pricing: the shim prices calls itself with budgetd's own pricing code (``budgetd.pricing``) and
sends budgetd explicit amounts: ``Authorize.estimated_cost_nanos`` before the call and
``RecordSpend.cost_nanos`` after it, so that a price override in the shim's config file is what
customers are charged. budgetd stays the pricing authority for direct gRPC callers, who send
token counts instead; both paths use ``ModelPrice.cost_nanos``, so they agree to the nano.

Output limits: a call that names no ``max_tokens``/``max_completion_tokens`` is reserved for the
model's whole output limit, because that is what it may cost. Reserving the full limit per call
is safe but limits concurrency: a customer with room for ten capped calls may have room for only
one uncapped one. When such a reservation is denied for budget and ``cap_output_to_budget`` is on
(the default), the shim computes how many output tokens the customer can still afford (from the
denial's ``remaining_nanos``, minus the prompt's cost, at the model's output price), reserves
that, and injects ``max_tokens`` into the upstream request, so not even the upstream can
overspend. The trade-off: near the end of a budget, answers get shorter (possibly truncated with
``finish_reason: "length"``) instead of being refused.

Settling: every charge goes through the durable outbox (``proxy_shim.outbox``): written and
fsynced before the caller finishes its response, then sent to RecordSpend at once, and resent
by the outbox's sender with the same request_id until budgetd acknowledges it. Under
``--fail-open``, a call served while budgetd was unreachable has no reservation: its charge is
queued for the customer alone and delivered when budgetd is back.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from budgetd.pricing import ModelPrice, TokenUsage
from budgetd.v1 import spend_service_pb2 as spend_pb
from proxy_shim.budgetd_client import BudgetdClient
from proxy_shim.config import ModelRoute
from proxy_shim.errors import (
    BudgetdUnavailable,
    BudgetExceeded,
    CustomerBlocked,
    InvalidRequest,
    ModelNotAllowed,
    RateLimited,
    ShimError,
)
from proxy_shim.observe import UNMETERED
from proxy_shim.outbox import Charge, Outbox, new_request_id
from proxy_shim.settings import ShimSettings
from proxy_shim.usd import render_usd

log = logging.getLogger("proxy_shim.gate")

_REASONS = spend_pb.DenialReason


@dataclass
class Admission:
    """A call let through, and what is needed to settle it."""

    customer_id: str | None
    model: ModelRoute
    prompt_tokens: int
    reservation_id: str = ""
    # Set when the shim capped an uncapped call to what the customer can afford.
    injected_max_tokens: int | None = None
    spend_nanos: int | None = None
    remaining_nanos: int | None = None
    # False when the call holds no reservation: no customer id, or budgetd down under
    # --fail-open (then ``fail_open`` is set, and the charge is queued in the outbox).
    metered: bool = True
    fail_open: bool = False


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a settled call was charged."""

    cost_nanos: int
    spend_nanos: int | None
    remaining_nanos: int | None


def affordable_output_tokens(
    price: ModelPrice, prompt_tokens: int, remaining_nanos: int, limit: int
) -> int:
    """The most output tokens (up to ``limit``) whose cost with the prompt fits the budget."""
    input_cost = price.cost_nanos(TokenUsage(input_tokens=prompt_tokens))
    headroom = remaining_nanos - input_cost
    if headroom <= 0:
        return 0
    _, output_rate, _ = price.rates_for(prompt_tokens)
    if output_rate == 0:
        return limit
    tokens = min(limit, headroom * 1_000_000 // output_rate)
    # The per-call rounding is once over the sum, so the sum may exceed by a nano: step back.
    while (
        tokens > 0
        and price.cost_nanos(TokenUsage(input_tokens=prompt_tokens, output_tokens=tokens))
        > remaining_nanos
    ):
        tokens -= 1
    return tokens


def refusal(decision: spend_pb.AuthorizeResponse, customer_id: str) -> ShimError:
    """The HTTP error for a denied Authorize, in LiteLLM's words where it has them.

    BUDGET_EXCEEDED -> 429 budget_exceeded; BLOCKED -> 403; MODEL_NOT_ALLOWED -> 403 with
    budgetd's message, which names the rule (allowed_models or allowed_model_region);
    RATE_LIMITED and PARALLEL_LIMIT (and any reason newer than this shim) -> 429 with
    ``Retry-After`` in whole seconds, rounded up.
    """
    reason = decision.denial_reason
    if reason == _REASONS.DENIAL_REASON_BUDGET_EXCEEDED:
        if decision.denied_by.startswith("model_max_budget."):
            # A model_max_budget cap: the customer's own totals would not explain the refusal.
            return BudgetExceeded(
                f"ExceededBudget: End User={customer_id} over budget for model="
                f"{decision.model}. {decision.message}"
            )
        budget = (
            render_usd(decision.max_budget_nanos) if decision.HasField("max_budget_nanos") else None
        )
        return BudgetExceeded(
            f"ExceededBudget: End User={customer_id} over budget. "
            f"Spend={render_usd(decision.spend_nanos)}, Budget={budget}"
        )
    if reason == _REASONS.DENIAL_REASON_BLOCKED:
        return CustomerBlocked(
            f"End User={customer_id} is blocked. Unblock it with /customer/unblock."
        )
    if reason == _REASONS.DENIAL_REASON_MODEL_NOT_ALLOWED:
        return ModelNotAllowed(decision.message or "model not allowed for this customer")
    # RATE_LIMITED, PARALLEL_LIMIT, and anything newer: tell the client when to come back.
    retry = 1
    if decision.HasField("retry_after"):
        retry = max(1, -(-decision.retry_after.ToMicroseconds() // 1_000_000))
    return RateLimited(decision.message or "rate limited", headers={"Retry-After": str(retry)})


class Gate:
    """Admits, settles and releases calls through budgetd."""

    def __init__(self, budgetd: BudgetdClient, settings: ShimSettings, outbox: Outbox) -> None:
        self._budgetd = budgetd
        self._settings = settings
        self._outbox = outbox
        self._tasks: set[asyncio.Task[Any]] = set()

    def output_limit(self, route: ModelRoute) -> int:
        """The most output tokens a call to ``route`` can produce."""
        return (
            route.max_output_tokens
            or route.price.max_output_tokens
            or self._settings.default_max_output_tokens
        )

    async def admit(
        self,
        customer_id: str | None,
        route: ModelRoute,
        prompt_tokens: int,
        max_output_tokens: int | None,
        *,
        has_output: bool = True,
    ) -> Admission:
        """Reserve for a call or raise the refusal; see the module docstring for output caps."""
        if customer_id is None:
            if self._settings.require_customer_id:
                raise InvalidRequest(
                    "a customer id is required: pass 'user', metadata.user_id or the "
                    "x-litellm-customer-id header",
                    param="user",
                )
            return Admission(None, route, prompt_tokens, metered=False)
        explicit = max_output_tokens is not None
        if not has_output:
            output = 0
        elif max_output_tokens is not None:
            output = max_output_tokens
        else:
            output = self.output_limit(route)
        try:
            decision = await self._authorize(customer_id, route, prompt_tokens, output)
            injected = None
            if (
                not decision.allowed
                and decision.denial_reason == _REASONS.DENIAL_REASON_BUDGET_EXCEEDED
                and has_output
                and not explicit
                and self._settings.cap_output_to_budget
                and decision.HasField("remaining_nanos")
            ):
                affordable = affordable_output_tokens(
                    route.price, prompt_tokens, decision.remaining_nanos, output
                )
                if affordable >= 1:
                    decision = await self._authorize(customer_id, route, prompt_tokens, affordable)
                    injected = affordable
        except BudgetdUnavailable:
            if not self._settings.fail_open:
                raise
            UNMETERED.labels("fail_open").inc()
            log.error(
                "budgetd unreachable: serving without a reservation because of --fail-open; "
                "the charge is queued in the outbox and delivered when budgetd is back (the "
                "budget is not enforced for this call)",
                extra={"fields": {"customer": customer_id, "model": route.name}},
            )
            return Admission(customer_id, route, prompt_tokens, metered=False, fail_open=True)
        if not decision.allowed:
            raise refusal(decision, customer_id)
        return Admission(
            customer_id=customer_id,
            model=route,
            prompt_tokens=prompt_tokens,
            reservation_id=decision.reservation_id,
            injected_max_tokens=injected,
            spend_nanos=decision.spend_nanos,
            remaining_nanos=(
                decision.remaining_nanos if decision.HasField("remaining_nanos") else None
            ),
        )

    async def _authorize(
        self, customer_id: str, route: ModelRoute, prompt_tokens: int, output_tokens: int
    ) -> spend_pb.AuthorizeResponse:
        estimate = route.price.cost_nanos(
            TokenUsage(input_tokens=prompt_tokens, output_tokens=output_tokens)
        )
        return await self._budgetd.authorize(
            spend_pb.AuthorizeRequest(
                customer_id=customer_id,
                model=route.name,
                input_tokens=prompt_tokens,
                max_output_tokens=output_tokens,
                estimated_cost_nanos=estimate,
                request_id=str(uuid.uuid4()),
                # Checked against the customer's allowed_model_region; empty when unconfigured.
                model_region=route.region or "",
            )
        )

    async def settle(self, admission: Admission, usage: TokenUsage) -> Settlement:
        """Charge what a call used, settling its reservation; see ``proxy_shim.outbox``.

        Returns once the charge is durable in the outbox, after one attempt at RecordSpend.
        When budgetd did not acknowledge it (down, slow), the settlement has no spend figures
        and the outbox's sender delivers the charge later. The cost is computed either way.
        """
        cost = admission.model.price.cost_nanos(usage)
        if admission.customer_id is None or not (admission.metered or admission.fail_open):
            return Settlement(cost, None, None)
        charge = Charge(
            request_id=new_request_id(),
            customer_id=admission.customer_id,
            reservation_id=admission.reservation_id,
            model=admission.model.name,
            usage=usage,
            cost_nanos=cost,
        )
        # A fail-open call found budgetd unreachable a moment ago: leave it to the sender
        # rather than make the client wait for a second deadline.
        reply = await self._outbox.charge(charge, try_now=not admission.fail_open)
        if reply is None:
            return Settlement(cost, None, None)
        return Settlement(
            reply.charged_nanos,
            reply.spend_nanos,
            reply.remaining_nanos if reply.HasField("remaining_nanos") else None,
        )

    async def release(self, admission: Admission) -> None:
        """Give a reservation back without charging (the upstream failed).

        Tried at once; queued in the outbox only if budgetd cannot be reached. A release lost
        anyway (the shim killed first) costs no money: the hold expires after its TTL.
        """
        if not admission.reservation_id:
            return
        await self._outbox.release(admission.reservation_id)

    def in_background(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``work`` to completion even if the request that started it is cancelled.

        Settling a cut-off stream happens here: the request's task may be cancelled by the
        client's disconnect, and a charge must not be cancelled with it. The task is kept
        referenced until done, and ``drain`` awaits the rest at shutdown.
        """
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for background settlements (at shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
