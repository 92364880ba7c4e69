"""Envoy's header messages, and the headers budgetd adds to an admitted call."""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import base_pb2

from budgetd.domain.records import Decision

# Set on the request forwarded upstream for an admitted call. A client cannot forge them: they
# are overwritten when set, and removed when budgetd has no value to give.
RESERVATION_HEADER = "x-budgetd-reservation-id"
REMAINING_HEADER = "x-budgetd-remaining-nanos"
BUDGETD_HEADERS = (RESERVATION_HEADER, REMAINING_HEADER)

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def header_map_pairs(header_map: base_pb2.HeaderMap) -> list[tuple[str, str]]:
    """(name, value) pairs of a HeaderMap; Envoy sends values in ``raw_value`` by default."""
    return [
        (h.key, h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value)
        for h in header_map.headers
    ]


def set_headers(
    pairs: Iterable[tuple[str, str]], *, raw: bool = False
) -> list[base_pb2.HeaderValueOption]:
    """Options that set (replacing any client-sent value) each header of ``pairs``.

    ext_authz reads ``value``; ext_proc mutations are given ``raw_value`` (``raw=True``), the
    field Envoy itself uses in the header maps it sends to a processor.
    """
    return [
        base_pb2.HeaderValueOption(
            header=(
                base_pb2.HeaderValue(key=name, raw_value=value.encode())
                if raw
                else base_pb2.HeaderValue(key=name, value=value)
            ),
            append_action=_OVERWRITE,
        )
        for name, value in pairs
    ]


def admitted_headers(decision: Decision) -> tuple[dict[str, str], list[str]]:
    """The budgetd headers to set on an admitted call's upstream request, and those to remove."""
    assert decision.reservation_id is not None
    added = {RESERVATION_HEADER: decision.reservation_id}
    removed = []
    remaining = decision.remaining_nanos
    if remaining is None:
        removed.append(REMAINING_HEADER)
    else:
        added[REMAINING_HEADER] = str(remaining)
    return added, removed


def decision_metadata(decision: Decision, customer_id: str, model: str | None) -> dict[str, str]:
    """Dynamic metadata of an admitted call (access logs, later filters).

    Nanos are strings: a protobuf Struct holds numbers as doubles, which are not exact beyond
    2**53 nanos (about 9 million USD).
    """
    metadata: dict[str, str] = {
        "reservation_id": decision.reservation_id or "",
        "customer_id": customer_id,
        "held_nanos": str(decision.held_nanos),
    }
    if model:
        metadata["model"] = model
    if decision.remaining_nanos is not None:
        metadata["remaining_nanos"] = str(decision.remaining_nanos)
    return metadata
