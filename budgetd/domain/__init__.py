"""The domain: customers, pricing tiers, reservations and the ledger.

Services here own their units of work: each public method runs in one transaction opened through
``budgetd.store.database.Database`` and commits only when it returns.
"""
