"""
Tests for the sans-IO RFC 6455 framing in ``native_anyio._frames``.

Pure logic, so every test is synchronous. Tests that do not depend on the direction run for both
peers (wsproto style): ``client`` parses unmasked server frames, ``server`` parses masked client
frames. The golden byte strings come from RFC 6455 section 5.7.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from native_anyio._errors import MessageTooBig, RemoteProtocolError
from native_anyio._frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    FrameProtocolError,
    encode_close_payload,
    encode_frame,
    parse_close_payload,
)

KEY = bytes([0x37, 0xFA, 0x21, 0x3D])  # the masking key of the RFC 6455 5.7 examples
LIMIT = 1 << 20

# fmt: off
RFC_HELLO = bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
RFC_HELLO_MASKED = bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
RFC_HEL = bytes([0x01, 0x03, 0x48, 0x65, 0x6C])
RFC_LO = bytes([0x80, 0x02, 0x6C, 0x6F])
RFC_PING_HELLO = bytes([0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
RFC_PONG_HELLO_MASKED = bytes([0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
# fmt: on


@pytest.fixture(params=["client", "server"])
def direction(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_parser(direction: str, max_message_size: int = LIMIT) -> FrameParser:
    return FrameParser(max_message_size=max_message_size, expect_masked=direction == "server")


def frame(direction: str, opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    """A frame as the peer of ``direction`` sends it (clients mask, servers do not)."""
    return encode_frame(opcode, payload, mask=direction == "server", fin=fin, rsv=rsv, mask_key=KEY)


def header(direction: str, opcode: int, length: int, *, fin: bool = True) -> bytes:
    """Only the header (and masking key) of a frame announcing ``length`` payload bytes."""
    first = bytes([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if direction == "server" else 0
    if length < 126:
        head = first + bytes([mask_bit | length])
    elif length < 65536:
        head = first + bytes([mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        head = first + bytes([mask_bit | 127]) + length.to_bytes(8, "big")
    return head + KEY if direction == "server" else head


def feed_bytewise(parser: FrameParser, data: bytes) -> list[bytes]:
    out: list[bytes] = []
    for i in range(len(data)):
        out += parser.feed(data[i : i + 1])
    return out


# -- golden frames -----------------------------------------------------------------------------


class TestGolden:
    def test_rfc_unmasked_hello_to_client(self) -> None:
        parser = make_parser("client")
        assert parser.feed(RFC_HELLO) == [b"Hello"]
        assert parser.control == []
        assert parser.buffered == 0

    def test_rfc_masked_hello_to_server(self) -> None:
        parser = make_parser("server")
        assert parser.feed(RFC_HELLO_MASKED) == [b"Hello"]

    def test_encode_reproduces_rfc_masked_hello(self) -> None:
        assert encode_frame(OP_TEXT, b"Hello", mask=True, mask_key=KEY) == RFC_HELLO_MASKED
        assert encode_frame(OP_TEXT, b"Hello", mask=False) == RFC_HELLO

    def test_rfc_fragmented_hel_lo(self) -> None:
        parser = make_parser("client")
        assert parser.feed(RFC_HEL) == []
        assert parser.feed(RFC_LO) == [b"Hello"]

    def test_rfc_fragmented_hel_lo_in_one_read(self) -> None:
        assert make_parser("client").feed(RFC_HEL + RFC_LO) == [b"Hello"]

    def test_rfc_ping_to_client(self) -> None:
        parser = make_parser("client")
        assert parser.feed(RFC_PING_HELLO) == []
        assert parser.control == [(OP_PING, b"Hello")]

    def test_rfc_masked_pong_to_server(self) -> None:
        parser = make_parser("server")
        assert parser.feed(RFC_PONG_HELLO_MASKED) == []
        assert parser.control == [(OP_PONG, b"Hello")]

    def test_rfc_256_byte_binary(self) -> None:
        payload = bytes(range(256))
        data = bytes([0x82, 0x7E, 0x01, 0x00]) + payload
        assert encode_frame(OP_BINARY, payload, mask=False) == data
        assert make_parser("client").feed(data) == [payload]

    def test_rfc_64k_binary(self) -> None:
        payload = bytes(range(256)) * 256
        data = bytes([0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]) + payload
        assert encode_frame(OP_BINARY, payload, mask=False) == data
        assert make_parser("client").feed(data) == [payload]

    def test_single_text_frame(self, direction: str) -> None:
        assert make_parser(direction).feed(frame(direction, OP_TEXT, "héllo €".encode())) == [
            "héllo €".encode()
        ]

    def test_single_binary_frame(self, direction: str) -> None:
        payload = b"\x00\xff\xfe\x80"  # not UTF-8: binary messages are not validated
        assert make_parser(direction).feed(frame(direction, OP_BINARY, payload)) == [payload]

    @pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
    @pytest.mark.parametrize(
        ("length", "head_size"),
        [(0, 2), (125, 2), (126, 4), (200, 4), (65535, 4), (65536, 10), (70000, 10)],
    )
    def test_length_classes(self, direction: str, opcode: int, length: int, head_size: int) -> None:
        payload = (b"abcdefg" * (length // 7 + 1))[:length]
        data = frame(direction, opcode, payload)
        masked = direction == "server"
        assert len(data) == head_size + (4 if masked else 0) + length
        assert make_parser(direction).feed(data) == [payload]

    def test_several_frames_in_one_read(self, direction: str) -> None:
        data = (
            frame(direction, OP_TEXT, b"a")
            + frame(direction, OP_BINARY, b"\x00" * 300)
            + frame(direction, OP_PING, b"p")
            + frame(direction, OP_TEXT, b"b" * 70000)
            + frame(direction, OP_TEXT, b"c")
        )
        parser = make_parser(direction)
        assert parser.feed(data) == [b"a", b"\x00" * 300, b"b" * 70000, b"c"]
        assert parser.control == [(OP_PING, b"p")]

    @pytest.mark.parametrize("length", [5, 200, 65535, 70000])
    def test_frame_fed_one_byte_at_a_time(self, direction: str, length: int) -> None:
        payload = (b"xyz" * length)[:length]
        data = frame(direction, OP_TEXT, payload) + frame(direction, OP_TEXT, b"next")
        parser = make_parser(direction)
        out: list[bytes] = []
        for i in range(len(data)):
            out += parser.feed(data[i : i + 1])
            if i == len(data) - 8:
                assert parser.buffered > 0
        assert out == [payload, b"next"]
        assert parser.buffered == 0

    def test_buffered_counts_partial_frame(self, direction: str) -> None:
        data = frame(direction, OP_BINARY, b"q" * 1000)
        parser = make_parser(direction)
        assert parser.feed(data[:3]) == []
        assert parser.buffered == 3
        assert parser.feed(data[3:500]) == []
        assert parser.buffered == 500
        assert parser.feed(data[500:]) == [b"q" * 1000]
        assert parser.buffered == 0

    def test_control_frames_accumulate_until_cleared(self, direction: str) -> None:
        parser = make_parser(direction)
        parser.feed(frame(direction, OP_PING, b"1") + frame(direction, OP_PONG, b"2"))
        parser.feed(frame(direction, OP_PING, b"3"))
        assert parser.control == [(OP_PING, b"1"), (OP_PONG, b"2"), (OP_PING, b"3")]
        parser.control.clear()
        parser.feed(frame(direction, OP_PONG, b""))
        assert parser.control == [(OP_PONG, b"")]

    def test_max_message_size_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="max_message_size"):
            FrameParser(max_message_size=0)


# -- fragmentation and UTF-8 ---------------------------------------------------------------------


class TestFragmentation:
    def test_control_frames_interleaved(self, direction: str) -> None:
        data = (
            frame(direction, OP_TEXT, b"one ", fin=False)
            + frame(direction, OP_PING, b"p1")
            + frame(direction, OP_CONT, b"two ", fin=False)
            + frame(direction, OP_PONG, b"p2")
            + frame(direction, OP_PING, b"")
            + frame(direction, OP_CONT, b"three")
        )
        parser = make_parser(direction)
        assert parser.feed(data) == [b"one two three"]
        assert parser.control == [(OP_PING, b"p1"), (OP_PONG, b"p2"), (OP_PING, b"")]

    def test_close_interleaved_ends_the_stream(self, direction: str) -> None:
        data = (
            frame(direction, OP_BINARY, b"part", fin=False)
            + frame(direction, OP_CLOSE, encode_close_payload(1001, "bye"))
            + frame(direction, OP_CONT, b"rest")
        )
        parser = make_parser(direction)
        assert parser.feed(data) == []
        assert parser.closed
        assert parser.control == [(OP_CLOSE, b"\x03\xe9bye")]

    def test_binary_fragments(self, direction: str) -> None:
        data = (
            frame(direction, OP_BINARY, b"\xff", fin=False)
            + frame(direction, OP_CONT, b"\xfe", fin=False)
            + frame(direction, OP_CONT, b"\x00")
        )
        assert make_parser(direction).feed(data) == [b"\xff\xfe\x00"]

    def test_fragments_fed_separately(self, direction: str) -> None:
        parser = make_parser(direction)
        assert parser.feed(frame(direction, OP_TEXT, b"ab", fin=False)) == []
        assert parser.feed(frame(direction, OP_PING, b"x")) == []
        assert parser.feed(frame(direction, OP_CONT, b"cd", fin=False)) == []
        assert parser.feed(frame(direction, OP_CONT, b"ef")) == [b"abcdef"]
        # The next message starts from a clean state (including the fast path).
        assert parser.feed(frame(direction, OP_TEXT, b"g")) == [b"g"]

    @pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
    def test_empty_message(self, direction: str, opcode: int) -> None:
        assert make_parser(direction).feed(frame(direction, opcode, b"")) == [b""]

    def test_empty_fragments(self, direction: str) -> None:
        data = (
            frame(direction, OP_TEXT, b"", fin=False)
            + frame(direction, OP_CONT, b"", fin=False)
            + frame(direction, OP_CONT, b"x", fin=False)
            + frame(direction, OP_CONT, b"")
        )
        assert make_parser(direction).feed(data) == [b"x"]

    def test_all_fragments_empty(self, direction: str) -> None:
        data = frame(direction, OP_BINARY, b"", fin=False) + frame(direction, OP_CONT, b"")
        assert make_parser(direction).feed(data) == [b""]

    @pytest.mark.parametrize("text", ["€", "😀", "é"])
    def test_code_point_split_across_fragments(self, direction: str, text: str) -> None:
        encoded = text.encode()
        for cut in range(1, len(encoded)):
            data = frame(direction, OP_TEXT, encoded[:cut], fin=False) + frame(
                direction, OP_CONT, encoded[cut:]
            )
            assert make_parser(direction).feed(data) == [encoded]

    def test_code_point_split_over_three_fragments(self, direction: str) -> None:
        data = (
            frame(direction, OP_TEXT, b"\xf0\x9f", fin=False)
            + frame(direction, OP_PING, b"")
            + frame(direction, OP_CONT, b"\x98", fin=False)
            + frame(direction, OP_CONT, b"\x80!")
        )
        assert make_parser(direction).feed(data) == ["😀!".encode()]

    @pytest.mark.parametrize(
        "parts",
        [
            (b"\xe2\x82", b"\x28"),  # broken 3-byte sequence
            (b"ok\xe2", b""),  # truncated at the end of the message
            (b"\xed\xa0", b"\x80"),  # UTF-16 surrogate
            (b"\xc0", b"\xaf"),  # overlong
            (b"ok", b"\xff"),
        ],
    )
    def test_invalid_utf8_across_fragments(self, direction: str, parts: tuple[bytes, bytes]) -> None:
        data = frame(direction, OP_TEXT, parts[0], fin=False) + frame(direction, OP_CONT, parts[1])
        with pytest.raises(FrameProtocolError) as info:
            make_parser(direction).feed(data)
        assert info.value.close_code == 1007

    def test_binary_fragments_are_not_utf8_checked(self, direction: str) -> None:
        data = frame(direction, OP_BINARY, b"\xe2\x82", fin=False) + frame(direction, OP_CONT, b"\x28")
        assert make_parser(direction).feed(data) == [b"\xe2\x82\x28"]


BAD_UTF8 = [
    b"\xff",
    b"abc\x80",
    b"\xc3\x28",
    b"\xe2\x82",  # truncated
    b"\xed\xa0\x80",  # surrogate U+D800
    b"\xc0\xaf",  # overlong '/'
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xf8\x88\x80\x80\x80",  # 5-byte form
]


class TestUtf8:
    @pytest.mark.parametrize("payload", BAD_UTF8)
    def test_invalid_single_frame(self, direction: str, payload: bytes) -> None:
        # client: the fast path; server (masked): the slow path.
        with pytest.raises(FrameProtocolError) as info:
            make_parser(direction).feed(frame(direction, OP_TEXT, payload))
        assert info.value.close_code == 1007

    @pytest.mark.parametrize("length", [200, 70000])
    def test_invalid_long_single_frame(self, direction: str, length: int) -> None:
        # 16-bit length (fast path for the client) and 64-bit length (always the slow path).
        payload = b"a" * (length - 1) + b"\xff"
        with pytest.raises(FrameProtocolError) as info:
            make_parser(direction).feed(frame(direction, OP_TEXT, payload))
        assert info.value.close_code == 1007

    def test_invalid_frame_after_valid_ones_in_same_read(self, direction: str) -> None:
        data = frame(direction, OP_TEXT, b"fine") + frame(direction, OP_TEXT, b"\xc3\x28")
        with pytest.raises(FrameProtocolError) as info:
            make_parser(direction).feed(data)
        assert info.value.close_code == 1007

    @pytest.mark.parametrize(
        "text",
        ["", "plain ascii {json}", "\x00\x7f", "é", "€uro", "😀", "mixed é € 😀 \U0010ffff", "\ud7ff\ue000"],
    )
    def test_valid_text(self, direction: str, text: str) -> None:
        encoded = text.encode()
        assert make_parser(direction).feed(frame(direction, OP_TEXT, encoded)) == [encoded]

    def test_ascii_payload_of_every_byte_below_0x80(self, direction: str) -> None:
        payload = bytes(range(128))
        assert make_parser(direction).feed(frame(direction, OP_TEXT, payload)) == [payload]

    @pytest.mark.parametrize("byte", range(0x80, 0x100, 7))
    def test_lone_high_byte_in_ascii_text_rejected(self, direction: str, byte: int) -> None:
        payload = b"ascii " + bytes([byte]) + b" ascii"
        with pytest.raises(FrameProtocolError) as info:
            make_parser(direction).feed(frame(direction, OP_TEXT, payload))
        assert info.value.close_code == 1007


# -- protocol violations -------------------------------------------------------------------------


def assert_protocol_error(parser: FrameParser, data: bytes, close_code: int = 1002) -> FrameProtocolError:
    with pytest.raises(FrameProtocolError) as info:
        parser.feed(data)
    assert info.value.close_code == close_code
    assert isinstance(info.value, RemoteProtocolError)
    return info.value


class TestViolations:
    @pytest.mark.parametrize("rsv", [1, 2, 4, 7])
    @pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_CLOSE])
    def test_rsv_bits(self, direction: str, rsv: int, opcode: int) -> None:
        assert_protocol_error(make_parser(direction), frame(direction, opcode, b"", rsv=rsv))

    def test_rsv_bit_on_continuation(self, direction: str) -> None:
        data = frame(direction, OP_TEXT, b"a", fin=False) + frame(direction, OP_CONT, b"b", rsv=4)
        assert_protocol_error(make_parser(direction), data)

    @pytest.mark.parametrize("length", [0, 5, 125, 126, 300, 65536])
    @pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
    def test_masked_frame_to_client(self, opcode: int, length: int) -> None:
        data = encode_frame(opcode, b"a" * length, mask=True, mask_key=KEY)
        error = assert_protocol_error(make_parser("client"), data[:2])
        assert "masked" in str(error)

    @pytest.mark.parametrize("length", [0, 5, 125, 126, 300, 65536])
    @pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
    def test_unmasked_frame_to_server(self, opcode: int, length: int) -> None:
        # Short and 16-bit text frames are the shape of the client-side fast path: a server must
        # still refuse them when they arrive unmasked.
        data = encode_frame(opcode, b"a" * length, mask=False)
        assert_protocol_error(make_parser("server"), data)

    def test_unmasked_frame_to_server_is_refused_from_two_bytes(self) -> None:
        assert_protocol_error(make_parser("server"), b"\x81\x05")

    @pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
    def test_masked_control_to_client_and_unmasked_control_to_server(self, opcode: int) -> None:
        assert_protocol_error(make_parser("client"), encode_frame(opcode, b"", mask=True, mask_key=KEY))
        assert_protocol_error(make_parser("server"), encode_frame(opcode, b"", mask=False))

    @pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
    def test_reserved_opcodes(self, direction: str, opcode: int) -> None:
        error = assert_protocol_error(make_parser(direction), frame(direction, opcode, b"x"))
        assert "reserved opcode" in str(error)

    @pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
    def test_fragmented_control_frame(self, direction: str, opcode: int) -> None:
        assert_protocol_error(make_parser(direction), frame(direction, opcode, b"", fin=False))

    @pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
    @pytest.mark.parametrize("length", [126, 127, 65536])
    def test_control_frame_too_long(self, direction: str, opcode: int, length: int) -> None:
        # Refused from the header alone.
        assert_protocol_error(make_parser(direction), header(direction, opcode, length))

    @pytest.mark.parametrize("opcode", [OP_PING, OP_PONG])
    def test_control_frame_of_125_bytes_is_fine(self, direction: str, opcode: int) -> None:
        parser = make_parser(direction)
        assert parser.feed(frame(direction, opcode, b"z" * 125)) == []
        assert parser.control == [(opcode, b"z" * 125)]

    def test_continuation_without_message(self, direction: str) -> None:
        assert_protocol_error(make_parser(direction), frame(direction, OP_CONT, b"x"))

    def test_continuation_after_finished_message(self, direction: str) -> None:
        data = (
            frame(direction, OP_TEXT, b"a", fin=False)
            + frame(direction, OP_CONT, b"b")
            + frame(direction, OP_CONT, b"c")
        )
        assert_protocol_error(make_parser(direction), data)

    @pytest.mark.parametrize("first", [OP_TEXT, OP_BINARY])
    @pytest.mark.parametrize("second", [OP_TEXT, OP_BINARY])
    @pytest.mark.parametrize("second_fin", [True, False])
    def test_new_data_frame_during_fragmented_message(
        self, direction: str, first: int, second: int, second_fin: bool
    ) -> None:
        # A FIN text frame (0x81) is the fast-path shape: it must still be refused here.
        data = frame(direction, first, b"a", fin=False) + frame(direction, second, b"b", fin=second_fin)
        assert_protocol_error(make_parser(direction), data)

    def test_new_data_frame_during_fragmented_message_in_later_read(self, direction: str) -> None:
        parser = make_parser(direction)
        assert parser.feed(frame(direction, OP_TEXT, b"a", fin=False)) == []
        assert_protocol_error(parser, frame(direction, OP_TEXT, b"b"))

    @pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
    def test_64bit_length_top_bit(self, direction: str, opcode: int) -> None:
        mask_bit = 0x80 if direction == "server" else 0
        head = bytes([0x80 | opcode, mask_bit | 127]) + (1 << 63).to_bytes(8, "big")
        # Only the header: refused before any payload (or even the masking key) arrives.
        error = assert_protocol_error(make_parser(direction, max_message_size=1 << 62), head)
        assert "top bit" in str(error)

    def test_64bit_length_top_bit_fed_bytewise(self, direction: str) -> None:
        mask_bit = 0x80 if direction == "server" else 0
        head = bytes([0x82, mask_bit | 127]) + (0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "big")
        parser = make_parser(direction)
        for byte in head[:-1]:
            assert parser.feed(bytes([byte])) == []
        assert_protocol_error(parser, head[-1:])


# -- message size --------------------------------------------------------------------------------


class TestMessageTooBig:
    @pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
    @pytest.mark.parametrize(("limit", "length"), [(10, 11), (100, 126), (1000, 65535), (65536, 65537)])
    def test_single_frame_from_header(self, direction: str, opcode: int, limit: int, length: int) -> None:
        parser = make_parser(direction, max_message_size=limit)
        with pytest.raises(MessageTooBig) as info:
            parser.feed(header(direction, opcode, length))
        assert (info.value.size, info.value.limit) == (length, limit)
        assert isinstance(info.value, RemoteProtocolError)

    @pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
    def test_huge_announced_length_from_header(self, direction: str, opcode: int) -> None:
        parser = make_parser(direction)
        with pytest.raises(MessageTooBig) as info:
            parser.feed(header(direction, opcode, (1 << 63) - 1))
        assert info.value.size == (1 << 63) - 1

    @pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
    def test_single_frame_header_fed_bytewise(self, direction: str, opcode: int) -> None:
        # Refused as soon as the 16-bit length is complete (before a masking key arrives).
        head = header(direction, opcode, 5000)
        parser = make_parser(direction, max_message_size=4999)
        for byte in head[:3]:
            assert parser.feed(bytes([byte])) == []
        with pytest.raises(MessageTooBig):
            parser.feed(head[3:4])

    @pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
    @pytest.mark.parametrize("length", [10, 200, 70000])
    def test_exactly_at_limit_is_fine(self, direction: str, opcode: int, length: int) -> None:
        payload = b"m" * length
        parser = make_parser(direction, max_message_size=length)
        assert parser.feed(frame(direction, opcode, payload)) == [payload]

    @pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
    def test_fragmented_from_header(self, direction: str, opcode: int) -> None:
        parser = make_parser(direction, max_message_size=100)
        first = frame(direction, opcode, b"a" * 60, fin=False)
        assert parser.feed(first + frame(direction, OP_PING, b"p" * 50)) == []
        with pytest.raises(MessageTooBig) as info:
            parser.feed(header(direction, OP_CONT, 41, fin=False))
        assert (info.value.size, info.value.limit) == (101, 100)

    def test_fragmented_exactly_at_limit_is_fine(self, direction: str) -> None:
        parser = make_parser(direction, max_message_size=100)
        data = (
            frame(direction, OP_BINARY, b"a" * 60, fin=False)
            + frame(direction, OP_PING, b"p" * 125)  # control frames do not count
            + frame(direction, OP_CONT, b"b" * 40)
        )
        assert parser.feed(data) == [b"a" * 60 + b"b" * 40]

    def test_limit_applies_per_message(self, direction: str) -> None:
        parser = make_parser(direction, max_message_size=100)
        data = b"".join(frame(direction, OP_TEXT, b"x" * 100) for _ in range(5))
        assert parser.feed(data) == [b"x" * 100] * 5
        data = frame(direction, OP_BINARY, b"y" * 60, fin=False) + frame(direction, OP_CONT, b"y" * 40)
        assert parser.feed(data * 2) == [b"y" * 100] * 2

    def test_size_checked_before_utf8(self, direction: str) -> None:
        # A whole oversized frame with bad UTF-8 in one read is refused for its size, exactly as
        # when only its header has arrived: the outcome must not depend on how reads are split.
        data = frame(direction, OP_TEXT, b"\xff" * 200)
        with pytest.raises(MessageTooBig):
            make_parser(direction, max_message_size=100).feed(data)
        with pytest.raises(MessageTooBig):
            make_parser(direction, max_message_size=100).feed(data[:6])


# -- messages before an error ---------------------------------------------------------------------


BAD_FRAMES = {
    "reserved_opcode": lambda d: frame(d, 0x3, b"x"),
    "bad_utf8": lambda d: frame(d, OP_TEXT, b"\xff"),
    "too_big_text": lambda d: frame(d, OP_TEXT, b"y" * 2000),
    "too_big_binary": lambda d: header(d, OP_BINARY, 100_000),
    "bad_close": lambda d: frame(d, OP_CLOSE, b"\x03\xed"),
    "wrong_mask": lambda d: encode_frame(OP_TEXT, b"x", mask=d == "client", mask_key=KEY),
}


class TestMessagesBeforeAnError:
    @pytest.mark.parametrize("bad", sorted(BAD_FRAMES))
    def test_kept_when_the_bad_frame_shares_the_read(self, direction: str, bad: str) -> None:
        parser = make_parser(direction, max_message_size=1000)
        data = (
            frame(direction, OP_TEXT, b"ok 1")  # the client fast path
            + frame(direction, OP_PING, b"p")
            + frame(direction, OP_BINARY, b"ok 2" * 100)  # the slow path
            + frame(direction, OP_TEXT, b"o", fin=False)
            + frame(direction, OP_CONT, b"k 3")
            + BAD_FRAMES[bad](direction)
            + frame(direction, OP_TEXT, b"never")
        )
        with pytest.raises((FrameProtocolError, MessageTooBig)):
            parser.feed(data)
        assert parser.completed_before_error == [b"ok 1", b"ok 2" * 100, b"ok 3"]
        assert parser.control == [(OP_PING, b"p")]

    def test_only_this_read(self, direction: str) -> None:
        parser = make_parser(direction)
        assert parser.completed_before_error == []
        assert parser.feed(frame(direction, OP_TEXT, b"returned")) == [b"returned"]
        with pytest.raises(FrameProtocolError):
            parser.feed(frame(direction, OP_TEXT, b"kept") + frame(direction, OP_CONT, b""))
        assert parser.completed_before_error == [b"kept"]

    def test_empty_when_the_bad_frame_comes_first(self, direction: str) -> None:
        parser = make_parser(direction)
        with pytest.raises(FrameProtocolError):
            parser.feed(frame(direction, 0xB, b"") + frame(direction, OP_TEXT, b"after"))
        assert parser.completed_before_error == []


# -- close frames --------------------------------------------------------------------------------

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


class TestClose:
    @pytest.mark.parametrize("code", VALID_CODES)
    def test_valid_code(self, direction: str, code: int) -> None:
        payload = code.to_bytes(2, "big") + "ciao ✓".encode()
        parser = make_parser(direction)
        assert parser.feed(frame(direction, OP_CLOSE, payload)) == []
        assert parser.closed
        assert parser.control == [(OP_CLOSE, payload)]
        assert parse_close_payload(payload) == (code, "ciao ✓")

    def test_empty_close(self, direction: str) -> None:
        parser = make_parser(direction)
        parser.feed(frame(direction, OP_CLOSE, b""))
        assert parser.closed
        assert parser.control == [(OP_CLOSE, b"")]
        assert parse_close_payload(b"") == (None, "")

    def test_one_byte_payload(self, direction: str) -> None:
        parser = make_parser(direction)
        assert_protocol_error(parser, frame(direction, OP_CLOSE, b"\x03"))
        with pytest.raises(FrameProtocolError) as info:
            parse_close_payload(b"\x03")
        assert info.value.close_code == 1002

    @pytest.mark.parametrize("code", INVALID_CODES)
    def test_invalid_code(self, direction: str, code: int) -> None:
        parser = make_parser(direction)
        assert_protocol_error(parser, frame(direction, OP_CLOSE, code.to_bytes(2, "big") + b"why"))
        # An invalid close is not handed to the caller as if it were a close to echo.
        assert parser.control == []
        with pytest.raises(FrameProtocolError):
            parse_close_payload(code.to_bytes(2, "big"))

    @pytest.mark.parametrize("reason", [b"\xff", b"ok\xc3", b"\xed\xa0\x80"])
    def test_non_utf8_reason(self, direction: str, reason: bytes) -> None:
        parser = make_parser(direction)
        assert_protocol_error(parser, frame(direction, OP_CLOSE, b"\x03\xe8" + reason), close_code=1007)
        assert parser.control == []

    def test_bytes_after_close_are_ignored(self, direction: str) -> None:
        parser = make_parser(direction)
        data = (
            frame(direction, OP_TEXT, b"before")
            + frame(direction, OP_CLOSE, encode_close_payload(1000))
            + frame(direction, OP_TEXT, b"after")
            + b"\xff\xff garbage"
        )
        assert parser.feed(data) == [b"before"]
        assert parser.closed
        assert parser.buffered == 0
        assert parser.feed(b"\x8f\xff more garbage that would be a protocol error") == []
        assert parser.feed(frame(direction, OP_TEXT, b"later")) == []
        assert parser.control == [(OP_CLOSE, b"\x03\xe8")]
        assert parser.buffered == 0

    def test_bytes_after_close_ignored_while_large_frame_pending(self, direction: str) -> None:
        parser = make_parser(direction)
        data = frame(direction, OP_CLOSE, b"") + header(direction, OP_BINARY, 100000)
        assert parser.feed(data) == []
        assert parser.feed(b"\x00" * 200000) == []
        assert parser.control == [(OP_CLOSE, b"")]

    def test_close_split_across_reads(self, direction: str) -> None:
        data = frame(direction, OP_CLOSE, encode_close_payload(4001, "done"))
        parser = make_parser(direction)
        assert feed_bytewise(parser, data + b"junk") == []
        assert parser.closed
        assert parse_close_payload(parser.control[0][1]) == (4001, "done")

    def test_encode_close_payload(self) -> None:
        assert encode_close_payload(None) == b""
        assert encode_close_payload(None, "ignored") == b""
        assert encode_close_payload(1000) == b"\x03\xe8"
        assert encode_close_payload(4000, "bye") == b"\x0f\xa0bye"

    @pytest.mark.parametrize("reason", ["x" * 200, "é" * 100, "€" * 60, "😀" * 40, "a" + "€" * 60])
    def test_encode_close_payload_truncates_on_a_code_point(self, reason: str) -> None:
        payload = encode_close_payload(1001, reason)
        assert len(payload) <= 125
        code, decoded = parse_close_payload(payload)
        assert code == 1001
        assert reason.startswith(decoded)
        assert len(decoded.encode()) > 119  # truncated by less than one code point

    @pytest.mark.parametrize("code", VALID_CODES)
    def test_encode_parse_round_trip(self, code: int) -> None:
        assert parse_close_payload(encode_close_payload(code, "réason")) == (code, "réason")


# -- encode_frame --------------------------------------------------------------------------------


class TestEncodeFrame:
    @pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70001])
    @pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
    @pytest.mark.parametrize("masked", [False, True])
    def test_round_trip(self, length: int, opcode: int, masked: bool) -> None:
        payload = (bytes(range(97, 123)) * (length // 26 + 1))[:length]
        data = encode_frame(opcode, payload, mask=masked)
        parser = FrameParser(max_message_size=LIMIT, expect_masked=masked)
        assert parser.feed(data) == [payload]
        head_size = 2 if length < 126 else 4 if length < 65536 else 10
        assert len(data) == head_size + (4 if masked else 0) + length
        assert data[0] == 0x80 | opcode
        assert data[1] & 0x80 == (0x80 if masked else 0)

    @pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
    @pytest.mark.parametrize("masked", [False, True])
    def test_control_round_trip(self, opcode: int, masked: bool) -> None:
        payload = b"\x03\xe8" + b"r" * 123
        parser = FrameParser(expect_masked=masked)
        assert parser.feed(encode_frame(opcode, payload, mask=masked)) == []
        assert parser.control == [(opcode, payload)]

    def test_fin_and_rsv_bits(self) -> None:
        assert encode_frame(OP_TEXT, b"", mask=False, fin=False)[0] == 0x01
        assert encode_frame(OP_CONT, b"", mask=False)[0] == 0x80
        assert encode_frame(OP_BINARY, b"", mask=False, rsv=4)[0] == 0xC2
        assert encode_frame(OP_BINARY, b"", mask=False, rsv=7, fin=False)[0] == 0x72

    def test_mask_key_determinism(self) -> None:
        payload = b"the quick brown fox"
        first = encode_frame(OP_TEXT, payload, mask=True, mask_key=KEY)
        assert first == encode_frame(OP_TEXT, payload, mask=True, mask_key=KEY)
        assert first[2:6] == KEY
        assert first[6:] == bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))
        other = encode_frame(OP_TEXT, payload, mask=True, mask_key=b"\x01\x02\x03\x04")
        assert other != first
        assert other[2:6] == b"\x01\x02\x03\x04"

    def test_zero_mask_key_is_identity(self) -> None:
        payload = bytes(range(256))
        data = encode_frame(OP_BINARY, payload, mask=True, mask_key=b"\x00" * 4)
        assert data[8:] == payload

    def test_random_mask_key(self) -> None:
        payload = b"\x00" * 64
        first = encode_frame(OP_BINARY, payload, mask=True)
        second = encode_frame(OP_BINARY, payload, mask=True)
        # A zero payload shows the key repeated: the key is used, and drawn fresh each time.
        assert first[6:] == first[2:6] * 16
        assert first[2:6] != second[2:6]  # fails with probability 2**-32

    def test_mask_key_ignored_when_not_masking(self) -> None:
        assert encode_frame(OP_TEXT, b"Hello", mask=False, mask_key=KEY) == RFC_HELLO

    @pytest.mark.parametrize("key", [b"", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05"])
    def test_mask_key_must_be_four_bytes(self, key: bytes) -> None:
        with pytest.raises(ValueError, match="4 bytes"):
            encode_frame(OP_TEXT, b"Hello", mask=True, mask_key=key)


# -- property tests ------------------------------------------------------------------------------

CLOSE_CODES = st.sampled_from(VALID_CODES)
CONTROL = st.tuples(st.sampled_from([OP_PING, OP_PONG]), st.binary(max_size=125))


def _big_binary(args: tuple[int, int]) -> bytes:
    length, start = args
    return (bytes(range(256)) * (length // 256 + 2))[start : start + length]


def _big_text(args: tuple[int, int]) -> bytes:
    length, start = args
    return ("aé€😀" * (length // 10 + 2))[start : start + length // 10].encode()


@dataclass
class Message:
    opcode: int
    payload: bytes
    cuts: list[int]  # byte offsets where the payload is split into fragments
    controls: list[list[tuple[int, bytes]]]  # control frames before each fragment after the first


@st.composite
def messages(draw: st.DrawFn) -> Message:
    opcode = draw(st.sampled_from([OP_TEXT, OP_BINARY]))
    size = draw(st.sampled_from(["small", "small", "small", "medium", "large"]))
    if opcode == OP_TEXT:
        if size == "small":
            payload = draw(st.text(max_size=40)).encode()
        elif size == "medium":
            payload = draw(st.text(min_size=40, max_size=300)).encode()
        else:
            payload = _big_text((draw(st.integers(1000, 300_000)), draw(st.integers(0, 3))))
    elif size == "small":
        payload = draw(st.binary(max_size=130))
    else:
        high = 70_000 if size == "large" else 1000
        payload = _big_binary((draw(st.integers(120, high)), draw(st.integers(0, 255))))
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=4)))
    controls = [draw(st.lists(CONTROL, max_size=2)) for _ in cuts]
    return Message(opcode, payload, cuts, controls)


@dataclass
class Script:
    data: bytes
    # (end offset in ``data``, "message" or "control", value) in stream order.
    events: list[tuple[int, str, object]]
    closed: bool


@st.composite
def scripts(draw: st.DrawFn, *, masked: bool) -> Script:
    """An encoded frame stream with the exact events a parser must produce from it."""
    data = bytearray()
    events: list[tuple[int, str, object]] = []

    def emit(opcode: int, payload: bytes, fin: bool = True) -> None:
        key = draw(st.binary(min_size=4, max_size=4)) if masked else None
        data.extend(encode_frame(opcode, payload, mask=masked, fin=fin, mask_key=key))

    for item in draw(st.lists(st.one_of(messages(), CONTROL), max_size=8)):
        if isinstance(item, tuple):
            emit(*item)
            events.append((len(data), "control", item))
            continue
        bounds = [0, *item.cuts, len(item.payload)]
        for i in range(len(bounds) - 1):
            if i:
                for control in item.controls[i - 1]:
                    emit(*control)
                    events.append((len(data), "control", control))
            emit(
                item.opcode if i == 0 else OP_CONT,
                item.payload[bounds[i] : bounds[i + 1]],
                i == len(bounds) - 2,
            )
        events.append((len(data), "message", item.payload))
    closed = draw(st.booleans())
    if closed:
        payload = encode_close_payload(draw(CLOSE_CODES), draw(st.text(max_size=20)))
        emit(OP_CLOSE, payload)
        events.append((len(data), "control", (OP_CLOSE, payload)))
        data.extend(draw(st.binary(max_size=20)))  # ignored
    return Script(bytes(data), events, closed)


@st.composite
def splits(draw: st.DrawFn, data: bytes) -> list[int]:
    """Chunk boundaries: none, every byte, or random cut points."""
    mode = draw(st.sampled_from(["whole", "bytewise", "random", "random"]))
    if mode == "whole":
        return []
    if mode == "bytewise" and len(data) <= 4000:
        return list(range(1, len(data)))
    return sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=30))))


def chunk(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


PROPERTY = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.data())
def test_property_stream_round_trip(data: st.DataObject) -> None:
    masked = data.draw(st.booleans(), label="server side")
    script = data.draw(scripts(masked=masked))
    cuts = data.draw(splits(script.data))
    parser = FrameParser(max_message_size=LIMIT, expect_masked=masked)
    got: list[bytes] = []
    offset = 0
    for piece in chunk(script.data, cuts):
        got += parser.feed(piece)
        offset += len(piece)
        # After every read, exactly the events that ended within the bytes fed so far are out.
        done = [(kind, value) for end, kind, value in script.events if end <= offset]
        assert got == [value for kind, value in done if kind == "message"]
        assert parser.control == [value for kind, value in done if kind == "control"]
    assert parser.closed == script.closed
    assert parser.buffered == 0


def _outcome(parser: FrameParser, pieces: list[bytes]) -> tuple[object, ...]:
    got: list[bytes] = []
    fed = 0
    for piece in pieces:
        fed += len(piece)
        try:
            got += parser.feed(piece)
        except FrameProtocolError as exc:
            return ("error", "protocol", exc.close_code, got + parser.completed_before_error)
        except MessageTooBig as exc:
            return ("error", "too big", exc.size > exc.limit, got + parser.completed_before_error)
        # Never more message bytes out than in.
        assert sum(map(len, got)) <= fed
    return ("ok", got, parser.control, parser.closed)


@st.composite
def mutated_streams(draw: st.DrawFn, *, masked: bool) -> bytes:
    data = bytearray(draw(scripts(masked=masked)).data)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    return bytes(data)


@PROPERTY
@given(st.data())
def test_property_arbitrary_bytes(data: st.DataObject) -> None:
    """
    Any input yields messages or FrameProtocolError / MessageTooBig, the same for any split; on an
    error, the messages before the bad frame are all delivered (returned or salvaged).
    """
    masked = data.draw(st.booleans(), label="server side")
    stream = data.draw(st.one_of(st.binary(max_size=300), mutated_streams(masked=masked)), label="stream")
    limit = data.draw(st.sampled_from([1, 50, 1000, LIMIT]), label="limit")
    cuts = data.draw(splits(stream))
    whole = _outcome(FrameParser(max_message_size=limit, expect_masked=masked), [stream])
    split = _outcome(FrameParser(max_message_size=limit, expect_masked=masked), chunk(stream, cuts))
    assert whole == split
    if whole[0] == "error":
        assert whole[2] in ((1002, 1007) if whole[1] == "protocol" else (True,))


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 70_000),
    st.sampled_from([OP_TEXT, OP_BINARY, OP_PING, OP_PONG]),
    st.one_of(st.none(), st.binary(min_size=4, max_size=4)),
    st.integers(0, 255),
)
def test_property_encode_round_trip(length: int, opcode: int, key: bytes | None, start: int) -> None:
    if opcode in (OP_PING, OP_PONG):
        length %= 126
    payload = _big_binary((length, start)) if opcode != OP_TEXT else b"t" * length
    masked = key is not None
    data = encode_frame(opcode, payload, mask=masked, mask_key=key)
    parser = FrameParser(max_message_size=LIMIT, expect_masked=masked)
    out = parser.feed(data)
    if opcode in (OP_PING, OP_PONG):
        assert (out, parser.control) == ([], [(opcode, payload)])
    else:
        assert (out, parser.control) == ([payload], [])


def test_seeded_random_fragmentation_soak() -> None:
    """A deterministic bulk run over many fragmentation patterns, cheaper than hypothesis."""
    rng = random.Random(6455)
    for masked in (False, True):
        parser = FrameParser(max_message_size=LIMIT, expect_masked=masked)
        stream = bytearray()
        expected: list[bytes] = []
        for _ in range(300):
            payload = rng.randbytes(rng.choice([0, 5, 125, 126, 1000, 70000]))
            opcode = OP_BINARY
            if rng.random() < 0.5:
                payload = payload.hex().encode()[: len(payload)]
                opcode = OP_TEXT
            cuts = sorted(rng.randint(0, len(payload)) for _ in range(rng.randint(0, 3)))
            bounds = [0, *cuts, len(payload)]
            for i in range(len(bounds) - 1):
                if i and rng.random() < 0.3:
                    stream += encode_frame(OP_PING, b"", mask=masked)
                piece = payload[bounds[i] : bounds[i + 1]]
                stream += encode_frame(
                    opcode if i == 0 else OP_CONT, piece, mask=masked, fin=i == len(bounds) - 2
                )
            expected.append(payload)
        got: list[bytes] = []
        pos = 0
        while pos < len(stream):
            step = rng.choice([1, 7, 100, 4096, 65536])
            got += parser.feed(bytes(stream[pos : pos + step]))
            pos += step
        assert got == expected
