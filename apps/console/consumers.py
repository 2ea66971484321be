"""The serial console consumer at /ws/serial/<vm pk>/: xterm.js in the browser, libvirt's console stream.

Protocol: binary frames carry the terminal (browser → guest: keystrokes; guest → browser: output); text
frames carry JSON control messages. From the browser: {"type": "takeover"} (an operator takes the serial
line from whoever holds it). To the browser: {"type": "status", "state": ..., "message": ...} with state
"connected" (this page holds the line and may type), "busy" (another session holds it; `can_take_over`),
"closed" (the line ended: VM stopped, or someone took it over) and "error" (refused; the socket closes).

One session at a time holds a VM's serial line (libvirt allows one console stream). The holder's consumer
opens the stream and broadcasts what the guest writes to the channel-layer group `serial-<vm pk>`; every
console page of that VM is in the group and shows it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from apps.core.choices import Action
from apps.core.permissions import restrict

from .services import serial_refusal
from .sessions import ConsoleLimitReached, open_session

logger = logging.getLogger("vireo.console")

#: WebSocket close codes the page understands (4000 + the HTTP status it would have been).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_UNAVAILABLE = 4409
CLOSE_TOO_MANY = 4429
#: Most bytes of output put in one channel-layer message (the layer's messages stay well below its cap).
MAX_OUTPUT_CHUNK = 32768


class SerialConsumer(AsyncWebsocketConsumer):
    """One browser's serial console of one VM (see the module docstring for the protocol)."""

    console: Any = None

    async def connect(self) -> None:
        self.console = None
        self.group = None
        self.session = None
        self.pump: asyncio.Task | None = None
        self.guard: asyncio.Task | None = None
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.refuse("Log in to open a console.", CLOSE_UNAUTHENTICATED)
            return
        vm_pk = int(self.scope["url_route"]["kwargs"]["pk"])
        self.vm, code, message = await self.authorize(user, vm_pk)
        if code:
            await self.refuse(message, code)
            return
        try:
            self.session = await self.open_session(user)
        except ConsoleLimitReached as exc:
            await self.refuse(str(exc), CLOSE_TOO_MANY)
            return
        self.guard = asyncio.ensure_future(self.watch_rights())
        self.group = f"serial-{self.vm.pk}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.output: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.pump = asyncio.ensure_future(self.pump_output())
        await self.take_line(force=False)

    async def refuse(self, message: str, code: int) -> None:
        """Tell the page why, then close with `code`."""
        await self.send_status("error", message)
        await self.close(code=code)

    async def send_status(self, state: str, message: str = "", **extra: Any) -> None:
        """A status message to this page."""
        await self.send(text_data=json.dumps({"type": "status", "state": state, "message": message, **extra}))

    @database_sync_to_async
    def open_session(self, user):
        """Register (and audit) this console; ConsoleLimitReached over the user's cap."""
        client = self.scope.get("client") or (None, None)
        session = self.scope.get("session")
        return open_session(
            user,
            self.vm,
            kind="serial",
            remote_addr=client[0],
            session_key=getattr(session, "session_key", None),
        )

    async def watch_rights(self) -> None:
        """Every few seconds: keep the session registered; close the console when its user lost the right."""
        while True:
            await asyncio.sleep(settings.VIREO_CONSOLE_CHECK_SECONDS)
            try:
                reason = await database_sync_to_async(self.session.check)()
            except Exception:  # Redis or the database away for a moment: check again next time
                logger.warning("serial console of VM %s: rights check failed", self.vm.pk, exc_info=True)
                continue
            if reason:
                logger.info(
                    "serial console of VM %s closed for user %s: %s", self.vm.pk, self.session.user_id, reason
                )
                await self.release(f"revoked: {reason}")
                await self.refuse(f"The console was closed: {reason}.", CLOSE_FORBIDDEN)
                return

    @database_sync_to_async
    def authorize(self, user, vm_pk: int):
        """(vm, 0, "") if `user` may use the VM's serial console now, else (vm or None, close code, reason)."""
        from apps.vms.models import VirtualMachine

        vm = (
            restrict(VirtualMachine.objects.select_related("host"), user, Action.VIEW)
            .filter(pk=vm_pk)
            .first()
        )
        if vm is None:
            return None, CLOSE_NOT_FOUND, "No such virtual machine."
        if not restrict(VirtualMachine.objects.filter(pk=vm.pk), user, Action.CONSOLE).exists():
            return vm, CLOSE_FORBIDDEN, "Your role may not open this VM's console."
        reason = serial_refusal(vm)
        if reason:
            return vm, CLOSE_UNAVAILABLE, reason
        return vm, 0, ""

    async def take_line(self, *, force: bool) -> None:
        """Open the VM's serial stream here (taking it over with `force`); tell the page how it went."""
        from apps import virt
        from apps.hosts.services import connection_for
        from apps.virt.consoles import ConsoleBusy, open_serial_console

        loop = asyncio.get_running_loop()
        output = self.output

        def on_data(data: bytes) -> None:
            loop.call_soon_threadsafe(output.put_nowait, data)

        def on_close(reason: str) -> None:
            loop.call_soon_threadsafe(output.put_nowait, None)
            logger.info("serial console of VM %s ended: %s", self.vm.pk, reason)

        def open_stream():
            return open_serial_console(
                connection_for(self.vm.host),
                str(self.vm.uuid),
                on_data=on_data,
                on_close=on_close,
                force=force,
            )

        try:
            self.console = await sync_to_async(open_stream, thread_sensitive=False)()
        except ConsoleBusy:
            await self.send_status(
                "busy",
                f"Another session holds the serial line of {self.vm.name} (a serial line takes one session "
                "at a time). Take it over to use it here; the other session is disconnected.",
                can_take_over=True,
            )
            return
        except virt.VirtError as exc:
            await self.send_status("closed", f"Cannot open the serial console of {self.vm.name}: {exc}")
            return
        await self.send_status("connected", f"Connected to the serial line of {self.vm.name}.")

    async def pump_output(self) -> None:
        """Forward the held stream's output to the VM's group, coalescing what arrived together."""
        while True:
            item = await self.output.get()
            if item is None:
                self.console = None
                if self.session is None or self.session.closed:
                    continue  # this page is closing: nobody to tell
                await self.send_status(
                    "closed",
                    f"The serial line of {self.vm.name} was closed: the VM stopped, or another session took "
                    "it over.",
                    can_take_over=True,
                )
                continue
            chunk = bytearray(item)
            while not self.output.empty() and len(chunk) < MAX_OUTPUT_CHUNK:
                nxt = self.output.get_nowait()
                if nxt is None:
                    self.output.put_nowait(None)  # handled on the next turn, after this output
                    break
                chunk += nxt
            await self.channel_layer.group_send(self.group, {"type": "serial.output", "data": bytes(chunk)})

    async def serial_output(self, message: dict[str, Any]) -> None:
        """Output of the VM's serial line (from whichever consumer holds it)."""
        await self.send(bytes_data=message["data"])

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if bytes_data is not None:
            if self.console is not None and not self.console.write(bytes_data):
                await self.send_status("closed", "The serial line is closed: reconnect to type again.")
            return
        try:
            request = json.loads(text_data or "")
        except ValueError:
            request = None
        kind = request.get("type") if isinstance(request, dict) else None
        if kind == "takeover":
            if self.console is not None and not self.console.closed:
                await self.send_status(
                    "connected", f"This page already holds the serial line of {self.vm.name}."
                )
            else:
                await self.take_line(force=True)
        else:
            await self.send(text_data=json.dumps({"type": "error", "message": 'Send {"type": "takeover"}.'}))

    async def release(self, reason: str) -> None:
        """Close the serial stream this page holds and end (and audit) its session; idempotent."""
        if self.console is not None:
            await sync_to_async(self.console.close, thread_sensitive=False)()
            self.console = None
        if self.session is not None and not self.session.closed:
            await database_sync_to_async(self.session.close)(reason)

    async def disconnect(self, code: int) -> None:
        if self.guard is not None and self.guard is not asyncio.current_task():
            self.guard.cancel()
        await self.release("closed")
        if self.pump is not None:
            self.pump.cancel()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
