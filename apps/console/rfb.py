"""The browser-to-VM half of a VNC (RFB 3.3-3.8) connection, read message by message, so that websockify can
drop a view-only console's input and keep every console shared.

ClientFilter.feed(data) returns what may go on to the VM's VNC server:
- the ClientInit's "shared" flag is always set (no console ever disconnects the others);
- while `view_only()` is true, input (key, pointer, clipboard, QEMU key events), desktop resizing and
  power requests (XVP) are dropped; screen requests (pixel format, encodings, update requests, fences,
  continuous updates) pass;
- anything it cannot parse (an unknown message, a security type other than None) ends the connection
  (ProtocolError): it never lets through what it did not understand.
"""

from __future__ import annotations

import struct
from collections.abc import Callable


class ProtocolError(Exception):
    """The browser sent something this filter does not understand; the connection must end."""


SECURITY_NONE = 1
#: Client message types whose length is fixed (type byte included) and which only ask for the screen.
SCREEN_FIXED = {0: 20, 3: 10, 150: 10}
#: Input and control messages of fixed length, dropped for view-only consoles.
INPUT_FIXED = {4: 8, 5: 6, 250: 4}


class ClientFilter:
    """Reads the browser's side of one RFB connection (see the module docstring)."""

    def __init__(self, view_only: Callable[[], bool]) -> None:
        self.view_only = view_only
        self.buffer = bytearray()
        self.stage = "version"
        self.minor = 8
        self.dropped = 0

    def feed(self, data: bytes) -> bytes:
        """Take bytes from the browser; return those to forward (possibly none)."""
        self.buffer += data
        out = bytearray()
        while True:
            size = self._next_size()
            if size is None or len(self.buffer) < size:
                return bytes(out)
            message = bytes(self.buffer[:size])
            del self.buffer[:size]
            out += self._pass(message)

    def _next_size(self) -> int | None:
        """Bytes of the next complete unit, or None until more bytes are needed to know."""
        buf = self.buffer
        if self.stage == "version":
            return 12
        if self.stage == "security":
            return 1
        if self.stage == "init":
            return 1
        if not buf:
            return None
        kind = buf[0]
        if kind in SCREEN_FIXED:
            return SCREEN_FIXED[kind]
        if kind in INPUT_FIXED:
            return INPUT_FIXED[kind]
        if kind == 2:  # SetEncodings: type, pad, count(u16), count x s32
            return None if len(buf) < 4 else 4 + 4 * struct.unpack(">H", buf[2:4])[0]
        if kind == 6:  # ClientCutText: type, pad x3, length(s32; negative: extended clipboard), text
            return None if len(buf) < 8 else 8 + abs(struct.unpack(">i", buf[4:8])[0])
        if kind == 248:  # ClientFence: type, pad x3, flags(u32), length(u8), payload
            return None if len(buf) < 9 else 9 + buf[8]
        if kind == 251:  # SetDesktopSize: type, pad, w, h, screens(u8), pad, screens x 16
            return None if len(buf) < 8 else 8 + 16 * buf[6]
        if kind == 255:  # QEMU: subtype 0 extended key event (12); 1 audio (4, or 10 for set format)
            if len(buf) < 2:
                return None
            if buf[1] == 0:
                return 12
            if buf[1] == 1:
                return None if len(buf) < 4 else (10 if struct.unpack(">H", buf[2:4])[0] == 2 else 4)
        raise ProtocolError(f"unknown RFB client message type {kind}")

    def _pass(self, message: bytes) -> bytes:
        if self.stage == "version":
            if not message.startswith(b"RFB 003."):
                raise ProtocolError("not an RFB protocol version")
            self.minor = int(message[8:11])
            # RFB 3.3: the server picks the security type, the client sends no choice.
            self.stage = "init" if self.minor < 7 else "security"
            return message
        if self.stage == "security":
            if message[0] != SECURITY_NONE:
                raise ProtocolError(f"RFB security type {message[0]} is not supported through Vireo")
            self.stage = "init"
            return message
        if self.stage == "init":
            self.stage = "messages"
            return b"\x01"  # ClientInit: shared
        kind = message[0]
        if kind in SCREEN_FIXED or kind in (2, 248):
            return message
        if kind == 255 and message[1] == 1:  # audio requests do not change the guest
            return message
        if self.view_only():
            self.dropped += 1
            return b""
        return message
