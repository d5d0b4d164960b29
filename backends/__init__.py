"""Implementations of ``BackendService``, and the rules they share.

Every backend subclasses ``base.Backend`` (the generated ``BackendServiceBase``
plus ``aclose``), so it is called the same in-process and over gRPC.

Shared layers, which every adapter imports and none of which imports an adapter:

- ``rules/``: the contract's rules as code (validation, the execution state
  machine and lease, apply, paging, ids, secret references, errors);
- ``encryption/``: sealed secret values and the master-key policy, over a
  small storage interface (``SealedSecretStorage``);
- ``wire``: endpoints, the bearer token's format and client TLS;
- ``codec``, ``batched_writes``: the wire encoding of the remote path (server
  and ``cloud/``) and the client's joined request writes;
- ``home``, ``keychain``, ``private_files``: ``$STIGMER_HOME``, the OS
  keychain, and checks on files only their owner may control;
- ``registry``: the storage backends by kind and URL scheme, the one line a
  new storage backend adds (read by the CLI, ``stigmer server --backend`` and
  the conformance suite).

Adapters, which only map the contract to their storage and never import each
other: ``sqlite/`` (the local default), ``postgres/`` (a shared database for
many server replicas), ``cloud/`` (a remote endpoint), and ``memory`` (for
tests). ``tests/test_boundaries.py`` checks both rules, and
that nothing here imports ``cli/``, ``server/``, ``runner/`` or ``conformance/``.
"""
