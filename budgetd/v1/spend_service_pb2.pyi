import datetime

from budgetd.v1 import resources_pb2 as _resources_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DenialReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DENIAL_REASON_UNSPECIFIED: _ClassVar[DenialReason]
    DENIAL_REASON_BUDGET_EXCEEDED: _ClassVar[DenialReason]
    DENIAL_REASON_BLOCKED: _ClassVar[DenialReason]
    DENIAL_REASON_RATE_LIMITED: _ClassVar[DenialReason]
    DENIAL_REASON_MODEL_NOT_ALLOWED: _ClassVar[DenialReason]
    DENIAL_REASON_PARALLEL_LIMIT: _ClassVar[DenialReason]
DENIAL_REASON_UNSPECIFIED: DenialReason
DENIAL_REASON_BUDGET_EXCEEDED: DenialReason
DENIAL_REASON_BLOCKED: DenialReason
DENIAL_REASON_RATE_LIMITED: DenialReason
DENIAL_REASON_MODEL_NOT_ALLOWED: DenialReason
DENIAL_REASON_PARALLEL_LIMIT: DenialReason

class Usage(_message.Message):
    __slots__ = ("input_tokens", "output_tokens", "cached_input_tokens")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ...) -> None: ...

class AuthorizeRequest(_message.Message):
    __slots__ = ("customer_id", "model", "input_tokens", "input_characters", "max_output_tokens", "estimated_cost_nanos", "request_id", "model_region")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    INPUT_CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_REGION_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    model: str
    input_tokens: int
    input_characters: int
    max_output_tokens: int
    estimated_cost_nanos: int
    request_id: str
    model_region: str
    def __init__(self, customer_id: _Optional[str] = ..., model: _Optional[str] = ..., input_tokens: _Optional[int] = ..., input_characters: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., estimated_cost_nanos: _Optional[int] = ..., request_id: _Optional[str] = ..., model_region: _Optional[str] = ...) -> None: ...

class AuthorizeResponse(_message.Message):
    __slots__ = ("allowed", "denial_reason", "message", "reservation_id", "held_nanos", "spend_nanos", "reserved_nanos", "max_budget_nanos", "remaining_nanos", "reservation_expire_time", "retry_after", "model", "window_end_time", "denied_by")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    DENIAL_REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    HELD_NANOS_FIELD_NUMBER: _ClassVar[int]
    SPEND_NANOS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_NANOS_FIELD_NUMBER: _ClassVar[int]
    MAX_BUDGET_NANOS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_NANOS_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_TIME_FIELD_NUMBER: _ClassVar[int]
    DENIED_BY_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    denial_reason: DenialReason
    message: str
    reservation_id: str
    held_nanos: int
    spend_nanos: int
    reserved_nanos: int
    max_budget_nanos: int
    remaining_nanos: int
    reservation_expire_time: _timestamp_pb2.Timestamp
    retry_after: _duration_pb2.Duration
    model: str
    window_end_time: _timestamp_pb2.Timestamp
    denied_by: str
    def __init__(self, allowed: _Optional[bool] = ..., denial_reason: _Optional[_Union[DenialReason, str]] = ..., message: _Optional[str] = ..., reservation_id: _Optional[str] = ..., held_nanos: _Optional[int] = ..., spend_nanos: _Optional[int] = ..., reserved_nanos: _Optional[int] = ..., max_budget_nanos: _Optional[int] = ..., remaining_nanos: _Optional[int] = ..., reservation_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., model: _Optional[str] = ..., window_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., denied_by: _Optional[str] = ...) -> None: ...

class RecordSpendRequest(_message.Message):
    __slots__ = ("request_id", "customer_id", "reservation_id", "model", "usage", "cost_nanos")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    customer_id: str
    reservation_id: str
    model: str
    usage: Usage
    cost_nanos: int
    def __init__(self, request_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., reservation_id: _Optional[str] = ..., model: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., cost_nanos: _Optional[int] = ...) -> None: ...

class RecordSpendResponse(_message.Message):
    __slots__ = ("charged_nanos", "spend_nanos", "remaining_nanos", "entry")
    CHARGED_NANOS_FIELD_NUMBER: _ClassVar[int]
    SPEND_NANOS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_NANOS_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    charged_nanos: int
    spend_nanos: int
    remaining_nanos: int
    entry: _resources_pb2.LedgerEntry
    def __init__(self, charged_nanos: _Optional[int] = ..., spend_nanos: _Optional[int] = ..., remaining_nanos: _Optional[int] = ..., entry: _Optional[_Union[_resources_pb2.LedgerEntry, _Mapping]] = ...) -> None: ...

class ReleaseReservationRequest(_message.Message):
    __slots__ = ("reservation_id",)
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    def __init__(self, reservation_id: _Optional[str] = ...) -> None: ...

class ReleaseReservationResponse(_message.Message):
    __slots__ = ("released_nanos",)
    RELEASED_NANOS_FIELD_NUMBER: _ClassVar[int]
    released_nanos: int
    def __init__(self, released_nanos: _Optional[int] = ...) -> None: ...

class GetSpendRequest(_message.Message):
    __slots__ = ("customer_id",)
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    def __init__(self, customer_id: _Optional[str] = ...) -> None: ...

class GetSpendResponse(_message.Message):
    __slots__ = ("customer_id", "spend_nanos", "reserved_nanos", "max_budget_nanos", "remaining_nanos", "ledger_entry_count", "window_start_time", "window_end_time")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SPEND_NANOS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_NANOS_FIELD_NUMBER: _ClassVar[int]
    MAX_BUDGET_NANOS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_NANOS_FIELD_NUMBER: _ClassVar[int]
    LEDGER_ENTRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_TIME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_TIME_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    spend_nanos: int
    reserved_nanos: int
    max_budget_nanos: int
    remaining_nanos: int
    ledger_entry_count: int
    window_start_time: _timestamp_pb2.Timestamp
    window_end_time: _timestamp_pb2.Timestamp
    def __init__(self, customer_id: _Optional[str] = ..., spend_nanos: _Optional[int] = ..., reserved_nanos: _Optional[int] = ..., max_budget_nanos: _Optional[int] = ..., remaining_nanos: _Optional[int] = ..., ledger_entry_count: _Optional[int] = ..., window_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListLedgerEntriesRequest(_message.Message):
    __slots__ = ("customer_id", "page_size", "page_token")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    page_size: int
    page_token: str
    def __init__(self, customer_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListLedgerEntriesResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_resources_pb2.LedgerEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[_resources_pb2.LedgerEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
