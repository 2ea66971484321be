"""apps.virt.consoles on the real libvirtd: the tiny guest's serial shell through virDomainOpenConsole."""

from __future__ import annotations

import threading
import time

import pytest

from apps import virt
from apps.virt.consoles import ConsoleBusy, open_serial_console

pytestmark = pytest.mark.integration


class Collector:
    """Gathers a console's output and its end, as the event-loop thread hands them over."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed: list[str] = []
        self.changed = threading.Condition()

    def on_data(self, data: bytes) -> None:
        with self.changed:
            self.data += data
            self.changed.notify_all()

    def on_close(self, reason: str) -> None:
        with self.changed:
            self.closed.append(reason)
            self.changed.notify_all()

    def wait_for(self, predicate, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; output so far: {bytes(self.data)[-500:]!r}")
                self.changed.wait(left)


@pytest.fixture
def conn():
    connection = virt.open_connection("qemu:///system")
    yield connection
    virt.close_connection(connection)


def test_types_into_the_serial_shell_and_reads_the_answer(tiny_vm, conn):
    out = Collector()
    console = open_serial_console(conn, tiny_vm.uuid, on_data=out.on_data, on_close=out.on_close)
    try:
        assert console.write(b"echo vireo-$((6*7))\r")
        out.wait_for(lambda: b"vireo-42" in out.data)
    finally:
        console.close()
    assert out.closed == ["closed"] and console.closed
    assert not console.write(b"x")


def test_a_held_console_is_busy_until_taken_over(tiny_vm, conn):
    first, second = Collector(), Collector()
    holder = open_serial_console(conn, tiny_vm.uuid, on_data=first.on_data, on_close=first.on_close)
    try:
        with pytest.raises(ConsoleBusy, match="Another session holds the serial console"):
            open_serial_console(conn, tiny_vm.uuid, on_data=second.on_data, on_close=second.on_close)
        taker = open_serial_console(
            conn, tiny_vm.uuid, on_data=second.on_data, on_close=second.on_close, force=True
        )
        try:
            first.wait_for(lambda: bool(first.closed))
            assert holder.closed
            taker.write(b"echo taken-$((40+2))\r")
            second.wait_for(lambda: b"taken-42" in second.data)
        finally:
            taker.close()
    finally:
        holder.close()


def test_missing_domain_is_not_found(conn):
    with pytest.raises(virt.NotFound):
        open_serial_console(
            conn, "00000000-0000-4000-8000-00000000dead", on_data=lambda d: None, on_close=lambda r: None
        )
