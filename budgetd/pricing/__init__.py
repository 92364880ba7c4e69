"""Exact integer pricing of LLM calls: nano-USD per 1M tokens, one upward rounding per call.

``PriceTable`` is the entry point: operator overrides and aliases (``PriceTable.from_file``) over
the prices shipped with genai-prices (``lookup_shipped``).
"""

from budgetd.pricing.price import ModelPrice, PriceTier, TokenUsage, usd_per_mtok_to_nanos
from budgetd.pricing.shipped import known_max_output_tokens, lookup_shipped
from budgetd.pricing.table import PriceFileError, PriceTable

__all__ = (
    "ModelPrice",
    "PriceFileError",
    "PriceTable",
    "PriceTier",
    "TokenUsage",
    "known_max_output_tokens",
    "lookup_shipped",
    "usd_per_mtok_to_nanos",
)
