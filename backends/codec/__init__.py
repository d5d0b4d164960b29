"""The contract's wire format for grpclib, shared by ``stigmer server`` and ``CloudBackend``.

``ContractCodec`` keeps betterproto2 messages as the Python API and has
Google's protobuf runtime (upb) write and read the bytes; see ``contract_codec`` and ``convert``.
"""

from .contract_codec import ContractCodec

__all__ = ["ContractCodec"]
