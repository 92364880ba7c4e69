"""The gRPC transport: servicers, their guard (auth, errors, metrics, logs) and the server."""
