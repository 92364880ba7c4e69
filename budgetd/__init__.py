"""budgetd: a budget-authorization sidecar for LLM traffic."""
