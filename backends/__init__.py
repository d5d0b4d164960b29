"""Implementations of ``BackendService``, and the rules they share.

Every backend subclasses ``base.Backend`` (the generated ``BackendServiceBase``
plus ``aclose``), so it is called the same in-process and over gRPC.

Shared layers, which every adapter imports and none of which imports an adapter:

- ``rules/``: the contract's rules as code (validation, the execution state
  machine and lease, apply, paging, ids, secret references, errors);
- ``encryption/``: sealed secret values and the master-key policy, over a
  small storage interface (``SealedSecretStorage``);
- ``wire``: endpoints, the bearer token's format and client TLS;
- ``home``, ``keychain``: ``$STIGMER_HOME`` and the OS keychain.

Adapters, which only map the contract to their storage and never import each
other: ``sqlite/`` (the local default), ``cloud/`` (a remote endpoint), and
``memory`` (for tests). ``tests/test_boundaries.py`` checks both rules, and
that nothing here imports ``cli/``, ``server/``, ``runner/`` or ``conformance/``.
"""
