"""TLS for the gRPC listener, and mTLS when a client CA is configured."""

from __future__ import annotations

import grpc

from budgetd.settings import Settings


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """Credentials for ``add_secure_port``; None when TLS is not configured (plaintext).

    ``BUDGETD_TLS_CERT_FILE`` and ``BUDGETD_TLS_KEY_FILE`` turn TLS on; with
    ``BUDGETD_TLS_CLIENT_CA_FILE`` every client must present a certificate that CA signed.
    """
    cert, key, client_ca = (
        settings.tls_cert_file,
        settings.tls_key_file,
        settings.tls_client_ca_file,
    )
    if cert is None and key is None:
        if client_ca is not None:
            raise ValueError(
                "BUDGETD_TLS_CLIENT_CA_FILE needs BUDGETD_TLS_CERT_FILE and BUDGETD_TLS_KEY_FILE"
            )
        return None
    if cert is None or key is None:
        raise ValueError("set both BUDGETD_TLS_CERT_FILE and BUDGETD_TLS_KEY_FILE, or neither")
    return grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())],
        root_certificates=client_ca.read_bytes() if client_ca is not None else None,
        require_client_auth=client_ca is not None,
    )
