"""proxy_shim: an OpenAI-compatible HTTP shim that gates and meters LLM calls through budgetd.

It speaks LiteLLM's proxy API (chat/completions/embeddings, and the customer and budget admin
routes) at the HTTP edge and budgetd's gRPC API behind it. It holds no budget state of its own.
"""
