"""The RFB filter websockify applies to what browsers send: shared always, input only from the controller."""

from __future__ import annotations

import struct

import pytest

from apps.console.rfb import ClientFilter, ProtocolError

HANDSHAKE = b"RFB 003.008\n" + b"\x01" + b"\x00"  # version, security None, ClientInit (exclusive!)
SET_PIXEL_FORMAT = b"\x00" + b"\x00" * 19
SET_ENCODINGS = b"\x02\x00" + struct.pack(">H", 3) + struct.pack(">iii", 0, 1, -239)
UPDATE_REQUEST = b"\x03\x01" + struct.pack(">HHHH", 0, 0, 800, 600)
KEY = b"\x04\x01\x00\x00" + struct.pack(">I", 0x61)
POINTER = b"\x05\x01" + struct.pack(">HH", 10, 20)
CUT_TEXT = b"\x06\x00\x00\x00" + struct.pack(">i", 5) + b"hello"
EXTENDED_CUT_TEXT = b"\x06\x00\x00\x00" + struct.pack(">i", -4) + b"\x00\x00\x00\x01"
QEMU_KEY = b"\xff\x00" + struct.pack(">HII", 1, 0x61, 0x1E)
QEMU_AUDIO_ENABLE = b"\xff\x01" + struct.pack(">H", 0)
QEMU_AUDIO_FORMAT = b"\xff\x01" + struct.pack(">HBBI", 2, 3, 2, 44100)
XVP_REBOOT = b"\xfa\x00\x01\x03"
FENCE = b"\xf8\x00\x00\x00" + struct.pack(">I", 0x80000001) + b"\x02" + b"ab"
CONTINUOUS = b"\x96\x01" + struct.pack(">HHHH", 0, 0, 800, 600)
DESKTOP_SIZE = b"\xfb\x00" + struct.pack(">HH", 1024, 768) + b"\x01\x00" + b"\x00" * 16

SCREEN = [
    SET_PIXEL_FORMAT,
    SET_ENCODINGS,
    UPDATE_REQUEST,
    FENCE,
    CONTINUOUS,
    QEMU_AUDIO_ENABLE,
    QEMU_AUDIO_FORMAT,
]
INPUT = [KEY, POINTER, CUT_TEXT, EXTENDED_CUT_TEXT, QEMU_KEY, XVP_REBOOT, DESKTOP_SIZE]


def test_the_client_init_is_always_shared():
    assert ClientFilter(lambda: False).feed(HANDSHAKE) == b"RFB 003.008\n\x01\x01"


def test_rfb_3_3_has_no_security_choice():
    flt = ClientFilter(lambda: True)
    assert flt.feed(b"RFB 003.003\n\x00") == b"RFB 003.003\n\x01"
    assert flt.feed(KEY + UPDATE_REQUEST) == UPDATE_REQUEST


@pytest.mark.parametrize("view_only", [True, False])
def test_input_passes_only_for_the_controller(view_only):
    flt = ClientFilter(lambda: view_only)
    flt.feed(HANDSHAKE)
    everything = b"".join(m for pair in zip(SCREEN, INPUT, strict=True) for m in pair)
    expected = b"".join(SCREEN) if view_only else everything
    assert flt.feed(everything) == expected
    assert flt.dropped == (len(INPUT) if view_only else 0)


def test_control_changes_between_messages():
    control = {"view_only": True}
    flt = ClientFilter(lambda: control["view_only"])
    flt.feed(HANDSHAKE)
    assert flt.feed(KEY) == b""
    control["view_only"] = False
    assert flt.feed(KEY) == KEY


def test_messages_split_anywhere_are_reassembled():
    flt = ClientFilter(lambda: True)
    stream = HANDSHAKE + SET_ENCODINGS + KEY + CUT_TEXT + UPDATE_REQUEST + QEMU_KEY + FENCE
    out = b"".join(flt.feed(stream[i : i + 1]) for i in range(len(stream)))
    assert out == b"RFB 003.008\n\x01\x01" + SET_ENCODINGS + UPDATE_REQUEST + FENCE


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"HTTP/1.1 200\r\n", "not an RFB"),
        (b"RFB 003.008\n\x02", "security type 2"),
        (HANDSHAKE + b"\x07", "unknown RFB client message type 7"),
        (HANDSHAKE + b"\xff\x09", "unknown RFB client message type 255"),
    ],
)
def test_what_it_cannot_read_ends_the_connection(data, words):
    with pytest.raises(ProtocolError, match=words):
        ClientFilter(lambda: False).feed(data)
