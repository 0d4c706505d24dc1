"""Wire contract shared by edge nodes and aggregators: topics and message types."""

from formcheck_protocol.messages import PROTOCOL_VERSION

__all__ = ["PROTOCOL_VERSION"]
