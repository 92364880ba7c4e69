"""What the Envoy servicers are told by the operator."""

from __future__ import annotations

from dataclasses import dataclass

from budgetd.settings import Settings

DEFAULT_CUSTOMER_HEADERS = ("x-litellm-customer-id", "x-litellm-end-user-id")


@dataclass(frozen=True, slots=True)
class EnvoyOptions:
    """Knobs of the ext_authz and ext_proc servicers (``BUDGETD_ENVOY_*`` settings)."""

    # Request headers naming the customer, first match wins; lower case, as Envoy sends them.
    customer_headers: tuple[str, ...] = DEFAULT_CUSTOMER_HEADERS
    # A call naming no customer is refused (400). False lets it through unmetered, as LiteLLM
    # serves calls without a customer; a gate in front of paid traffic should not do that.
    require_customer: bool = True
    # The hold taken when the model is unknown (no body, a cut body without a model, not JSON).
    default_estimate_nanos: int = 50_000_000
    # Prompt characters per estimated token, for the fallback charge of a call whose answer
    # carried no usage.
    chars_per_token: int = 3
    # ext_proc asks streamed chat calls for a final usage chunk (stream_options.include_usage),
    # so a stream is charged what the upstream counted rather than an estimate.
    stream_include_usage: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> EnvoyOptions:
        """The options a ``budgetd serve`` was configured with."""
        headers = tuple(name.strip().lower() for name in settings.envoy_customer_headers.split(","))
        return cls(
            customer_headers=tuple(name for name in headers if name),
            require_customer=settings.envoy_require_customer,
            default_estimate_nanos=settings.envoy_default_estimate_nanos,
            chars_per_token=settings.chars_per_token,
            stream_include_usage=settings.envoy_stream_include_usage,
        )
