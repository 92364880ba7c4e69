"""What to do with an admitted call's reservation once its answer is over (or cut short).

Pure: given what the call asked for and what the answer showed, decide between charging (the
reported usage, or an estimate of what was delivered) and releasing the hold. Never "leave it":
a hold left open would block the customer's budget until its TTL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from budgetd.envoy.calls import LlmCall
from budgetd.envoy.usage import ResponseMeter
from budgetd.pricing import TokenUsage


@dataclass(frozen=True, slots=True)
class Settlement:
    """Charge ``usage`` of ``model``, or release when ``charge`` is False."""

    charge: bool
    model: str = ""
    usage: TokenUsage | None = None
    # True when the charge is budgetd's estimate, not the upstream's count.
    estimated: bool = False
    reason: str = ""


def plan_settlement(
    call: LlmCall,
    held_nanos: int,
    status: int | None,
    meter: ResponseMeter | None,
    chars_per_token: int,
    default_model: str = "",
) -> Settlement:
    """Decide how a call's hold ends.

    An upstream error (status >= 400), no answer at all, or an answer with an empty body
    releases the hold: nothing billable was delivered. Otherwise the reported usage is charged,
    priced at the requested model (the one the hold was priced at; the answer's model is often a
    dated snapshot name). Without a usage report — a stream cut short, an upstream that does not
    report usage — the prompt estimate plus the generated text seen is charged. Without any model
    to price, the hold is released.
    """
    if status is None:
        return Settlement(charge=False, reason="no answer")
    if status >= 400:
        return Settlement(charge=False, reason=f"upstream status {status}")
    if meter is None or meter.bytes_seen == 0:
        return Settlement(charge=False, reason="empty answer")
    # The model the hold was priced at; else the one that answered; else the customer's default.
    model = call.model or meter.model or default_model
    if not model:
        # Nothing to price (GET /v1/models, a non-JSON body): the default estimate gated the
        # call, but charging it for every such request would be made up. Scope the filter to
        # the LLM routes.
        return Settlement(charge=False, reason="no model to price")
    if meter.usage is not None:
        return Settlement(charge=True, model=model, usage=meter.usage, reason="usage")
    usage = TokenUsage(
        input_tokens=math.ceil((call.input_characters or 0) / chars_per_token),
        output_tokens=math.ceil(meter.output_chars / chars_per_token),
    )
    return Settlement(charge=True, model=model, usage=usage, estimated=True, reason="estimate")
