"""
RFC 6455 framing, sans-IO: a parser for one direction of a websocket and a frame encoder.

Rules the parser enforces (RFC 6455 section 5, 7 and 8):

* no RSV bit may be set (we never negotiate an extension) -> 1002;
* frames from a server must not be masked, frames from a client must be -> 1002;
* reserved opcodes (3-7, 11-15) -> 1002;
* control frames (close, ping, pong) must have FIN set and at most 125 payload bytes -> 1002;
  they may arrive between the fragments of a data message;
* a continuation frame needs a message in progress, and a new data frame must not start while
  one is in progress -> 1002;
* a 64-bit length with the top bit set -> 1002;
* a message (all fragments together) larger than ``max_message_size`` -> 1009, detected from the
  frame header before its payload is buffered;
* text messages must be valid UTF-8 -> 1007 (checked on the whole message, so a code point split
  across fragments is fine);
* a close payload of 1 byte, an invalid close code, or a reason that is not UTF-8 -> 1002/1007;
* after a close frame, further input is ignored.

The steady-state path (a complete, unfragmented, unmasked text frame shorter than 64 KiB) is a
few bytecode operations per frame; everything else goes through :meth:`FrameParser._slow_frame`.
"""

from __future__ import annotations

import os
import struct
from typing import Final

from ._errors import MessageTooBig, RemoteProtocolError

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "FrameParser",
    "FrameProtocolError",
    "encode_close_payload",
    "encode_frame",
    "parse_close_payload",
]

OP_CONT: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

_DATA_OPCODES: Final = frozenset({OP_TEXT, OP_BINARY})
_CONTROL_OPCODES: Final = frozenset({OP_CLOSE, OP_PING, OP_PONG})

# Close codes a peer may put on the wire (RFC 6455 7.4.1/7.4.2, and the IANA registry up to 1014).
_VALID_CLOSE_CODES: Final = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)

_unpack_h = struct.Struct("!H").unpack_from
_unpack_q = struct.Struct("!Q").unpack_from


class FrameProtocolError(RemoteProtocolError):
    """
    The peer sent bytes that break RFC 6455.

    Attributes:
        close_code: the close code to send back (1002 protocol error, 1007 bad data).
    """

    def __init__(self, message: str, *, close_code: int = 1002) -> None:
        super().__init__(message)
        self.close_code = close_code


def _is_valid_close_code(code: int) -> bool:
    return code in _VALID_CLOSE_CODES or 3000 <= code <= 4999


def parse_close_payload(payload: bytes) -> tuple[int | None, str]:
    """
    Decode a close frame payload into ``(code, reason)``.

    Raises:
        FrameProtocolError: a 1-byte payload, an invalid code, or a non-UTF-8 reason.
    """
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise FrameProtocolError("close frame with a 1-byte payload")
    (code,) = _unpack_h(payload)
    if not _is_valid_close_code(code):
        raise FrameProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameProtocolError("close reason is not valid UTF-8", close_code=1007) from None
    return code, reason


def encode_close_payload(code: int | None, reason: str = "") -> bytes:
    """
    Encode a close payload; ``code=None`` gives the empty payload.

    A reason longer than the 123 bytes a control frame leaves for it is cut on a code point
    boundary, so the payload stays valid UTF-8 (the peer would fail the connection with 1007).
    """
    if code is None:
        return b""
    encoded = reason.encode("utf-8")
    if len(encoded) > 123:
        encoded = encoded[:123].decode("utf-8", "ignore").encode("utf-8")
    return code.to_bytes(2, "big") + encoded


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def encode_frame(
    opcode: int, payload: bytes, *, mask: bool, fin: bool = True, rsv: int = 0, mask_key: bytes | None = None
) -> bytes:
    """
    Encode one frame.

    Args:
        opcode: the frame opcode.
        payload: the unmasked payload.
        mask: True for client-to-server frames (a fresh random key unless ``mask_key`` is given).
        fin: the FIN bit.
        rsv: the three RSV bits as an integer 0-7 (only tests set them).
        mask_key: a fixed 4-byte masking key (tests).
    """
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | opcode])
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    if mask_key is None:
        key = os.urandom(4)
    elif len(mask_key) == 4:
        key = mask_key
    else:
        raise ValueError(f"mask_key must be 4 bytes, got {len(mask_key)}")
    return head + key + _mask(payload, key)


class FrameParser:
    """
    Incremental parser for the frames one peer receives.

    ``feed(data)`` takes any slice of the byte stream and returns the complete data messages it
    finished, as ``bytes`` (text messages are UTF-8 validated but not decoded). Control frames are
    appended to :attr:`control` as ``(opcode, payload)`` for the caller to act on (answer pings,
    note pongs, echo a close) and to clear. After a close frame, :attr:`closed` is set and the
    rest of the input is ignored.

    Args:
        max_message_size: limit on one message, all fragments together.
        expect_masked: ``False`` for a client reading server frames, ``True`` for a server.
    """

    __slots__ = ("_chunks", "_chunks_len", "_expect_masked", "_frag_op", "_frags", "_frags_len",
                 "_max", "_need", "_rest", "closed", "completed_before_error", "control")  # fmt: skip

    def __init__(self, *, max_message_size: int = 1 << 20, expect_masked: bool = False) -> None:
        if max_message_size < 1:
            raise ValueError("max_message_size must be >= 1")
        self._max = max_message_size
        self._expect_masked = expect_masked
        self._rest = b""
        self._chunks: list[bytes] = []
        self._chunks_len = 0
        self._need = 0
        self._frag_op: int | None = None
        self._frags: list[bytes] = []
        self._frags_len = 0
        self.control: list[tuple[int, bytes]] = []
        self.closed = False
        self.completed_before_error: list[bytes] = []

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._rest) + self._chunks_len

    def feed(self, data: bytes) -> list[bytes]:
        """
        Consume ``data`` and return the data messages it completed.

        When it raises, the messages the same call completed before the bad frame are in
        :attr:`completed_before_error` (they were valid and should still be delivered); control
        frames before it are in :attr:`control` as usual. The parser must not be fed again.

        Raises:
            FrameProtocolError: the input breaks RFC 6455 (see the module rules).
            MessageTooBig: a message exceeds ``max_message_size``.
        """
        if self.closed:
            return []
        if self._need:
            # A large frame is still incomplete: collect without re-parsing until it can be.
            self._chunks.append(data)
            self._chunks_len += len(data)
            if len(self._rest) + self._chunks_len < self._need:
                return []
            buf = self._rest + b"".join(self._chunks)
            self._chunks.clear()
            self._chunks_len = 0
            self._need = 0
        elif self._rest:
            buf = self._rest + data
        else:
            buf = data
        out: list[bytes] = []
        append = out.append
        pos = 0
        end = len(buf)
        limit = self._max
        # 0x100 never equals a byte: a server (masked input) never takes the unmasked fast path.
        fast_b0 = 0x100 if self._expect_masked else 0x81
        try:
            while end - pos >= 2:
                b0 = buf[pos]
                b1 = buf[pos + 1]
                if b0 == fast_b0 and self._frag_op is None:
                    # Fast path: unfragmented text frame, unmasked (client side).
                    if b1 < 126:
                        start = pos + 2
                        stop = start + b1
                    elif b1 == 126:
                        if end - pos < 4:
                            break
                        start = pos + 4
                        stop = start + ((buf[pos + 2] << 8) | buf[pos + 3])
                    else:
                        pos = self._slow_frame(buf, pos, end, out)
                        if pos < 0:
                            pos = -pos - 1
                            break
                        continue
                    # The size is checked from the header, before UTF-8, as on the slow path: the
                    # outcome must not depend on whether the payload arrived in the same read.
                    if stop - start > limit:
                        raise MessageTooBig(
                            f"message of {stop - start} bytes exceeds the limit of {limit}",
                            size=stop - start,
                            limit=limit,
                        )
                    if stop > end:
                        self._need = stop - pos
                        break
                    payload = buf[start:stop]
                    if not payload.isascii():
                        try:
                            payload.decode("utf-8")
                        except UnicodeDecodeError:
                            raise FrameProtocolError(
                                "text message is not valid UTF-8", close_code=1007
                            ) from None
                    append(payload)
                    pos = stop
                else:
                    pos = self._slow_frame(buf, pos, end, out)
                    if pos < 0:
                        pos = -pos - 1
                        break
        except (FrameProtocolError, MessageTooBig):
            # Keep what this read completed before the bad frame: those messages were valid.
            self.completed_before_error = out
            raise
        self._rest = buf[pos:] if pos < end else b""
        return out

    def _slow_frame(self, buf: bytes, pos: int, end: int, out: list[bytes]) -> int:
        """
        Parse one frame at ``pos`` the general way.

        Returns the position after it, or ``-(pos + 1)`` when more bytes are needed. After a close
        frame it returns ``end``: the rest of the input is ignored.
        """
        b0 = buf[pos]
        b1 = buf[pos + 1]
        fin = b0 & 0x80
        if b0 & 0x70:
            raise FrameProtocolError("RSV bits set without a negotiated extension")
        opcode = b0 & 0x0F
        masked = b1 & 0x80
        if bool(masked) != self._expect_masked:
            raise FrameProtocolError(
                "masked frame from a server" if masked else "unmasked frame from a client"
            )
        length = b1 & 0x7F
        head = 2
        if length == 126:
            if end - pos < 4:
                return -(pos + 1)
            (length,) = _unpack_h(buf, pos + 2)
            head = 4
        elif length == 127:
            if end - pos < 10:
                return -(pos + 1)
            (length,) = _unpack_q(buf, pos + 2)
            if length >> 63:
                raise FrameProtocolError("64-bit frame length with the top bit set")
            head = 10
        if opcode in _CONTROL_OPCODES:
            if not fin:
                raise FrameProtocolError("fragmented control frame")
            if length > 125:
                raise FrameProtocolError("control frame payload longer than 125 bytes")
        elif opcode in _DATA_OPCODES:
            if self._frag_op is not None:
                raise FrameProtocolError("new data frame while a fragmented message is in progress")
        elif opcode == OP_CONT:
            if self._frag_op is None:
                raise FrameProtocolError("continuation frame without a message in progress")
        else:
            raise FrameProtocolError(f"reserved opcode {opcode:#x}")
        if opcode not in _CONTROL_OPCODES and self._frags_len + length > self._max:
            size = self._frags_len + length
            raise MessageTooBig(
                f"message of {size} bytes exceeds the limit of {self._max}", size=size, limit=self._max
            )
        if masked:
            head += 4
        stop = pos + head + length
        if stop > end:
            if end - pos >= head:
                self._need = stop - pos
            return -(pos + 1)
        payload = buf[pos + head : stop]
        if masked:
            payload = _mask(payload, buf[pos + head - 4 : pos + head])
        if opcode in _CONTROL_OPCODES:
            if opcode == OP_CLOSE:
                # Validate before handing it over: a bad close is a protocol error, not a close
                # for the caller to echo.
                parse_close_payload(payload)
                self.closed = True
                self.control.append((opcode, payload))
                return end
            self.control.append((opcode, payload))
            return stop
        if opcode != OP_CONT:
            self._frag_op = opcode
        self._frags.append(payload)
        self._frags_len += length
        if fin:
            message = b"".join(self._frags)
            op = self._frag_op
            self._frags.clear()
            self._frags_len = 0
            self._frag_op = None
            if op == OP_TEXT and not message.isascii():
                try:
                    message.decode("utf-8")
                except UnicodeDecodeError:
                    raise FrameProtocolError("text message is not valid UTF-8", close_code=1007) from None
            out.append(message)
        return stop
