"""Wire contract shared by edge nodes and aggregators: topics and message types."""

from protocol.messages import PROTOCOL_VERSION

__all__ = ["PROTOCOL_VERSION"]
