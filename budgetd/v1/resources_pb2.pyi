import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WindowAlignment(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WINDOW_ALIGNMENT_UNSPECIFIED: _ClassVar[WindowAlignment]
    WINDOW_ALIGNMENT_ANNIVERSARY: _ClassVar[WindowAlignment]
    WINDOW_ALIGNMENT_CALENDAR: _ClassVar[WindowAlignment]
WINDOW_ALIGNMENT_UNSPECIFIED: WindowAlignment
WINDOW_ALIGNMENT_ANNIVERSARY: WindowAlignment
WINDOW_ALIGNMENT_CALENDAR: WindowAlignment

class BudgetLimits(_message.Message):
    __slots__ = ("max_budget_nanos", "soft_budget_nanos", "tpm_limit", "rpm_limit", "max_parallel_requests", "budget_duration", "model_max_budget", "window_alignment", "time_zone", "allowed_models")
    class ModelMaxBudgetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ModelBudget
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ModelBudget, _Mapping]] = ...) -> None: ...
    MAX_BUDGET_NANOS_FIELD_NUMBER: _ClassVar[int]
    SOFT_BUDGET_NANOS_FIELD_NUMBER: _ClassVar[int]
    TPM_LIMIT_FIELD_NUMBER: _ClassVar[int]
    RPM_LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_PARALLEL_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_DURATION_FIELD_NUMBER: _ClassVar[int]
    MODEL_MAX_BUDGET_FIELD_NUMBER: _ClassVar[int]
    WINDOW_ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    max_budget_nanos: int
    soft_budget_nanos: int
    tpm_limit: int
    rpm_limit: int
    max_parallel_requests: int
    budget_duration: str
    model_max_budget: _containers.MessageMap[str, ModelBudget]
    window_alignment: WindowAlignment
    time_zone: str
    allowed_models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, max_budget_nanos: _Optional[int] = ..., soft_budget_nanos: _Optional[int] = ..., tpm_limit: _Optional[int] = ..., rpm_limit: _Optional[int] = ..., max_parallel_requests: _Optional[int] = ..., budget_duration: _Optional[str] = ..., model_max_budget: _Optional[_Mapping[str, ModelBudget]] = ..., window_alignment: _Optional[_Union[WindowAlignment, str]] = ..., time_zone: _Optional[str] = ..., allowed_models: _Optional[_Iterable[str]] = ...) -> None: ...

class ModelBudget(_message.Message):
    __slots__ = ("max_budget_nanos", "budget_duration", "tpm_limit", "rpm_limit")
    MAX_BUDGET_NANOS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_DURATION_FIELD_NUMBER: _ClassVar[int]
    TPM_LIMIT_FIELD_NUMBER: _ClassVar[int]
    RPM_LIMIT_FIELD_NUMBER: _ClassVar[int]
    max_budget_nanos: int
    budget_duration: str
    tpm_limit: int
    rpm_limit: int
    def __init__(self, max_budget_nanos: _Optional[int] = ..., budget_duration: _Optional[str] = ..., tpm_limit: _Optional[int] = ..., rpm_limit: _Optional[int] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("budget_id", "limits", "customer_count", "create_time", "update_time")
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    budget_id: str
    limits: BudgetLimits
    customer_count: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, budget_id: _Optional[str] = ..., limits: _Optional[_Union[BudgetLimits, _Mapping]] = ..., customer_count: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Customer(_message.Message):
    __slots__ = ("user_id", "alias", "blocked", "budget_id", "limits", "effective_limits", "spend_nanos", "reserved_nanos", "allowed_model_region", "default_model", "metadata", "create_time", "update_time", "soft_budget_exceeded", "window_start_time", "window_end_time")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    SPEND_NANOS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_NANOS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODEL_REGION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SOFT_BUDGET_EXCEEDED_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_TIME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_TIME_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    alias: str
    blocked: bool
    budget_id: str
    limits: BudgetLimits
    effective_limits: BudgetLimits
    spend_nanos: int
    reserved_nanos: int
    allowed_model_region: str
    default_model: str
    metadata: _struct_pb2.Struct
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    soft_budget_exceeded: bool
    window_start_time: _timestamp_pb2.Timestamp
    window_end_time: _timestamp_pb2.Timestamp
    def __init__(self, user_id: _Optional[str] = ..., alias: _Optional[str] = ..., blocked: _Optional[bool] = ..., budget_id: _Optional[str] = ..., limits: _Optional[_Union[BudgetLimits, _Mapping]] = ..., effective_limits: _Optional[_Union[BudgetLimits, _Mapping]] = ..., spend_nanos: _Optional[int] = ..., reserved_nanos: _Optional[int] = ..., allowed_model_region: _Optional[str] = ..., default_model: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., soft_budget_exceeded: _Optional[bool] = ..., window_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ("entry_id", "user_id", "request_id", "reservation_id", "model", "input_tokens", "output_tokens", "cached_input_tokens", "cost_nanos", "spend_after_nanos", "create_time", "window_start_time")
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    SPEND_AFTER_NANOS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_TIME_FIELD_NUMBER: _ClassVar[int]
    entry_id: int
    user_id: str
    request_id: str
    reservation_id: str
    model: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost_nanos: int
    spend_after_nanos: int
    create_time: _timestamp_pb2.Timestamp
    window_start_time: _timestamp_pb2.Timestamp
    def __init__(self, entry_id: _Optional[int] = ..., user_id: _Optional[str] = ..., request_id: _Optional[str] = ..., reservation_id: _Optional[str] = ..., model: _Optional[str] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ..., cost_nanos: _Optional[int] = ..., spend_after_nanos: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
