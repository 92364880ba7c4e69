"""HTTP routes of the shim, one module per area of LiteLLM's API."""
