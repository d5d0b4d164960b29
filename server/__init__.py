"""``stigmer server``: any backend served over gRPC.

- ``backend_server.BackendServer`` — a ``Backend`` served with grpclib:
  BackendService, the gRPC health service, server reflection, bearer-token
  authentication (``gate``), optional TLS, graceful shutdown.
- ``startup`` — the checks made before serving (socket, TLS files, token),
  each failure a one-line ``StartupError``.
- ``launch.ServerProcess`` — ``stigmer server`` as a subprocess, for tests,
  the conformance suite and benchmarks.

The command itself is ``stigmer_backend.cli.server``.
"""
