"""WHAT is learned when: protocol registry, per-step image filtering and label remapping."""

from protocols.protocol import MODES, Protocol
from protocols.registry import all_protocols, get_protocol, protocol_names

__all__ = ["MODES", "Protocol", "all_protocols", "get_protocol", "protocol_names"]
