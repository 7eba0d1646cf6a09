"""Sans-IO codecs: bytes in, typed packets out, bytes back. No sockets, no asyncio."""

from broker.protocol.packets import MAGIC_REQ, MAGIC_RES, Packet, PacketType, encode_packet
from broker.protocol.reader import AdminLine, PacketReader

__all__ = [
    "MAGIC_REQ",
    "MAGIC_RES",
    "AdminLine",
    "Packet",
    "PacketReader",
    "PacketType",
    "encode_packet",
]
