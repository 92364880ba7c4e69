"""budgetd behind Envoy's own sidecar APIs: ext_authz (gate) and ext_proc (gate and meter).

Both servicers are thin: they read the call out of what Envoy sends (:mod:`budgetd.envoy.calls`),
ask the same :class:`~budgetd.domain.spend.SpendService` the budgetd.v1 API uses, and translate the
decision into Envoy's answer (:mod:`budgetd.envoy.refusals`). Envoy's generated stubs come from the
``xds-protos`` package.
"""
