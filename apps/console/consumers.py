"""Console sockets: the serial console at /ws/serial/<vm pk>/ and the presence socket of the graphical
console page at /ws/console/<vm pk>/.

Both show who else has a console of the VM open and who controls it: they join the channel-layer group
`console-<vm pk>` (sessions.presence_group) and send the page {"type": "presence", "me": <session id>,
"watchers": [...], "event": "alice took control"} whenever it changes.

Serial protocol: binary frames carry the terminal (browser → guest: keystrokes, only from the page in
control; guest → browser: output); text frames carry JSON. From the browser: {"type": "takeover"} (an
operator takes the serial line from whoever holds it, in Vireo or outside) and {"type": "handover", "to":
<session id>} (the page in control gives it to another operator's page). To the browser: {"type":
"status", "state": ..., "message": ...} with state "connected" (this page holds the line and may type),
"watching" (another Vireo page controls it, or the user is a viewer: read only), "busy" (a session outside
Vireo holds it), "closed" (the line ended) and "error" (refused; the socket closes). `can_take_over` says
whether this page may take over.

One session at a time holds a VM's serial line (libvirt allows one console stream): the consumer in
control opens the stream and broadcasts what the guest writes to the group `serial-<vm pk>`, which every
serial page of that VM is in.

Presence protocol (graphical console page): the page opens its VNC connection through websockify with a
ticket naming its session id, then sends {"type": "takeover", "session": <id>} or {"type": "handover",
"session": <id>, "to": <id>}; websockify passes the input of the session in control only.
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

from . import sessions
from .services import serial_refusal
from .sessions import ConsoleLimitReached

logger = logging.getLogger("vireo.console")

#: WebSocket close codes the page understands (4000 + the HTTP status it would have been).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_UNAVAILABLE = 4409
CLOSE_TOO_MANY = 4429
#: Most bytes of output put in one channel-layer message (the layer's messages stay well below its cap).
MAX_OUTPUT_CHUNK = 32768


class ConsoleSocket(AsyncWebsocketConsumer):
    """What both console sockets share: the permission check, refusals and presence."""

    kind = ""
    vm: Any = None
    session: Any = None

    async def start(self) -> bool:
        """Accept, check the user's rights on the VM, join the presence group; False if refused (closed)."""
        self.session = None
        self.groups_joined: list[str] = []
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.refuse("Log in to open a console.", CLOSE_UNAUTHENTICATED)
            return False
        vm_pk = int(self.scope["url_route"]["kwargs"]["pk"])
        self.vm, self.action, code, message = await self.authorize(user, vm_pk)
        if code:
            await self.refuse(message, code)
            return False
        await self.join(sessions.presence_group(self.vm.pk))
        return True

    async def join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined.append(group)

    async def refuse(self, message: str, code: int) -> None:
        """Tell the page why, then close with `code`."""
        await self.send_status("error", message)
        await self.close(code=code)

    async def send_status(self, state: str, message: str = "", **extra: Any) -> None:
        """A status message to this page."""
        await self.send(text_data=json.dumps({"type": "status", "state": state, "message": message, **extra}))

    async def send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content))

    def refusal(self, vm) -> str | None:
        """Why this kind of console cannot open for `vm` now (None if it can)."""
        return None

    async def watch_rights(self, check, what: str) -> None:
        """Every VIREO_CONSOLE_CHECK_SECONDS run `check` (a console session's or a RightsCheck's, in the
        sync thread); once it gives a reason, hand it to rights_lost() and stop."""
        while True:
            await asyncio.sleep(settings.VIREO_CONSOLE_CHECK_SECONDS)
            try:
                reason = await database_sync_to_async(check)()
            except Exception:  # Redis or the database away for a moment: check again next time
                logger.warning("%s of VM %s: rights check failed", what, self.vm.pk, exc_info=True)
                continue
            if reason:
                await self.rights_lost(reason)
                return

    async def rights_lost(self, reason: str) -> None:
        """Close this socket: its user may no longer have it."""
        await self.refuse(f"Closed: {reason}.", CLOSE_FORBIDDEN)

    @database_sync_to_async
    def authorize(self, user, vm_pk: int):
        """(vm, action, 0, "") if `user` may have this console of the VM (action: console, or view for
        those who may only watch), else (vm or None, None, close code, reason)."""
        from apps.vms.models import VirtualMachine

        vm = (
            restrict(VirtualMachine.objects.select_related("host"), user, Action.VIEW)
            .filter(pk=vm_pk)
            .first()
        )
        if vm is None:
            return None, None, CLOSE_NOT_FOUND, "No such virtual machine."
        may_control = restrict(VirtualMachine.objects.filter(pk=vm.pk), user, Action.CONSOLE).exists()
        reason = self.refusal(vm)
        if reason:
            return vm, None, CLOSE_UNAVAILABLE, reason
        return vm, Action.CONSOLE if may_control else Action.VIEW, 0, ""

    async def send_presence(self, event: str | None = None) -> None:
        """Who has a console of this VM open and who controls it, to this page."""
        people = await sync_to_async(sessions.presence, thread_sensitive=False)(self.vm.pk)
        me = self.session.id if self.session is not None else None
        await self.send_json({"type": "presence", "me": me, "watchers": people, "event": event})

    async def live_event(self, message: dict[str, Any]) -> None:
        """A published change of the VM's consoles (sessions.announce)."""
        event = json.loads(message["text"])
        if event.get("type") == "console.presence":
            await self.send_presence(event.get("event"))

    async def leave(self) -> None:
        for group in getattr(self, "groups_joined", ()):
            await self.channel_layer.group_discard(group, self.channel_name)


class SerialConsumer(ConsoleSocket):
    """One browser's serial console of one VM (see the module docstring for the protocol)."""

    kind = "serial"
    console: Any = None

    def refusal(self, vm) -> str | None:
        return serial_refusal(vm)

    async def connect(self) -> None:
        self.console = None
        self.pump: asyncio.Task | None = None
        self.guard: asyncio.Task | None = None
        if not await self.start():
            return
        try:
            self.session = await database_sync_to_async(self.open_session)()
        except ConsoleLimitReached as exc:
            await self.refuse(str(exc), CLOSE_TOO_MANY)
            return
        # Every few seconds: keep the session registered; close the console when its user lost the right.
        self.guard = asyncio.ensure_future(self.watch_rights(self.session.check, "serial console"))
        await self.join(f"serial-{self.vm.pk}")
        self.output: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.pump = asyncio.ensure_future(self.pump_output())
        holder = await self.holder()
        if self.action != Action.CONSOLE:
            await self.send_status(
                "watching", f"Your role may only watch the serial console of {self.vm.name}: it is read only."
            )
        elif holder is not None:
            await self.send_status(
                "watching",
                f"{holder['username']} has control of the serial line of {self.vm.name}: you are watching. "
                "Take over to type here.",
                can_take_over=True,
            )
        else:
            await self.take_line(force=False)
        await self.send_presence()

    def open_session(self):
        """Register (and audit) this console; ConsoleLimitReached over the user's cap."""
        client = self.scope.get("client") or (None, None)
        session = self.scope.get("session")
        return sessions.open_session(
            self.scope["user"],
            self.vm,
            kind="serial",
            remote_addr=client[0],
            session_key=getattr(session, "session_key", None),
            api_token_hash=self.scope.get("api_token_hash"),
            action=self.action,
            channel=self.channel_name,
        )

    async def holder(self) -> dict[str, Any] | None:
        """The record of the Vireo session that controls the serial line (other than this one), or None."""

        def find():
            current = sessions.controller("serial", self.vm.pk)
            if current is None or (self.session is not None and current == self.session.id):
                return None
            return sessions.session_record(current)

        return await sync_to_async(find, thread_sensitive=False)()

    async def rights_lost(self, reason: str) -> None:
        """The user may no longer hold the serial line: release it and close the console."""
        logger.info(
            "serial console of VM %s closed for user %s: %s", self.vm.pk, self.session.user_id, reason
        )
        await self.release(f"revoked: {reason}")
        await self.refuse(f"The console was closed: {reason}.", CLOSE_FORBIDDEN)

    async def take_line(self, *, force: bool, given_by: str | None = None) -> None:
        """Open the VM's serial stream here (taking it over with `force`); tell the page and the others."""
        from apps import virt
        from apps.hosts.services import connection_for
        from apps.virt.consoles import open_serial_console

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

        # Control first, so that the page losing the line sees who has it now.
        if not await sync_to_async(sessions.claim_control, thread_sensitive=False)(self.session, force=force):
            holder = await self.holder()
            await self.send_status(
                "watching",
                f"{holder['username'] if holder else 'Another page'} has control of the serial line of "
                f"{self.vm.name}: you are watching. Take over to type here.",
                can_take_over=True,
            )
            return
        try:
            self.console = await sync_to_async(open_stream, thread_sensitive=False)()
        except virt.VirtError as exc:
            await sync_to_async(sessions.release_control, thread_sensitive=False)(self.session)
            await self.line_refused(exc)
            return

        if given_by:
            event = f"{given_by} handed control of the serial console to {self.session.username}"
        elif force:
            event = f"{self.session.username} took over control of the serial console"
        else:
            event = f"{self.session.username} has control of the serial console"
        await sync_to_async(sessions.announce, thread_sensitive=False)(self.vm.pk, event)
        await self.send_status(
            "connected", f"Connected to the serial line of {self.vm.name}: you have control."
        )

    async def line_refused(self, exc: Exception) -> None:
        """Tell the page why the serial line could not be opened here."""
        from apps.virt.consoles import ConsoleBusy

        if isinstance(exc, ConsoleBusy):
            await self.send_status(
                "busy",
                f"A session outside Vireo (such as virsh console) holds the serial line of {self.vm.name}: "
                "a serial line takes one session at a time. Take it over to use it here; the other session "
                "is disconnected.",
                can_take_over=True,
            )
        else:
            await self.send_status(
                "closed", f"Cannot open the serial console of {self.vm.name}: {exc}", can_take_over=True
            )

    async def pump_output(self) -> None:
        """Forward the held stream's output to the VM's serial group, coalescing what arrived together."""
        while True:
            item = await self.output.get()
            if item is None:
                await self.line_lost()
                continue
            chunk = bytearray(item)
            while not self.output.empty() and len(chunk) < MAX_OUTPUT_CHUNK:
                nxt = self.output.get_nowait()
                if nxt is None:
                    self.output.put_nowait(None)  # handled on the next turn, after this output
                    break
                chunk += nxt
            await self.channel_layer.group_send(
                f"serial-{self.vm.pk}", {"type": "serial.output", "data": bytes(chunk)}
            )

    async def line_lost(self) -> None:
        """The stream this page held ended: taken over, handed over, VM stopped, or this page closing."""
        self.console = None
        if self.session is None or self.session.closed:
            return  # this page is closing: nobody to tell

        def release():
            sessions.release_control(self.session)
            return sessions.controller("serial", self.vm.pk)

        current = await sync_to_async(release, thread_sensitive=False)()
        holder = await self.holder() if current else None
        if holder is not None:
            await self.send_status(
                "watching",
                f"{holder['username']} has control of the serial line now: you are watching.",
                can_take_over=True,
            )
        else:
            await self.send_status(
                "closed",
                f"The serial line of {self.vm.name} was closed: the VM stopped, or a session outside Vireo "
                "took it over.",
                can_take_over=True,
            )
            await sync_to_async(sessions.announce, thread_sensitive=False)(
                self.vm.pk, f"{self.session.username} lost the serial line"
            )

    async def serial_output(self, message: dict[str, Any]) -> None:
        """Output of the VM's serial line (from whichever consumer holds it)."""
        await self.send(bytes_data=message["data"])

    async def serial_given(self, message: dict[str, Any]) -> None:
        """Another page handed control of the serial line to this one."""
        if self.action == Action.CONSOLE and (self.console is None or self.console.closed):
            await self.take_line(force=True, given_by=message["by"])

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if bytes_data is not None:
            if self.console is not None and not self.console.write(bytes_data):
                await self.send_status("closed", "The serial line is closed: reconnect to type again.")
            return  # pages without control are read only: their input goes nowhere
        try:
            request = json.loads(text_data or "")
        except ValueError:
            request = None
        kind = request.get("type") if isinstance(request, dict) else None
        if kind in ("takeover", "handover") and self.action != Action.CONSOLE:
            await self.send_json({"type": "error", "message": "Your role may only watch this console."})
        elif kind == "takeover":
            if self.console is not None and not self.console.closed:
                await self.send_status("connected", f"This page already has control of {self.vm.name}.")
            else:
                await self.take_line(force=True)
        elif kind == "handover":
            await self.hand_over(str(request.get("to", "")))
        else:
            await self.send_json({"type": "error", "message": 'Send {"type": "takeover"} or "handover".'})

    async def hand_over(self, target_id: str) -> None:
        """Give the serial line to another operator's serial page of this VM."""
        if self.console is None or self.console.closed:
            await self.send_json(
                {"type": "error", "message": "This page does not have control to hand over."}
            )
            return
        target = await sync_to_async(sessions.hand_control, thread_sensitive=False)(self.session, target_id)
        if target is None or not target.get("channel"):
            await self.send_json(
                {"type": "error", "message": "That session cannot take control (gone, or view only)."}
            )
            return
        console, self.console = self.console, None
        await sync_to_async(console.close, thread_sensitive=False)()
        await self.send_status(
            "watching", f"You handed control to {target['username']}: you are watching.", can_take_over=True
        )
        await self.channel_layer.send(
            target["channel"], {"type": "serial.given", "by": self.session.username}
        )

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
        await self.leave()


class ConsolePresenceConsumer(ConsoleSocket):
    """The graphical console page's socket: presence, and taking or handing over control of the VM."""

    kind = "vnc"

    async def connect(self) -> None:
        self.guard: asyncio.Task | None = None
        if not await self.start():
            return
        session = self.scope.get("session")
        self.rights = sessions.RightsCheck(
            self.scope["user"].pk,
            self.vm.pk,
            Action.VIEW,
            getattr(session, "session_key", None),
            self.scope.get("api_token_hash"),
        )
        await database_sync_to_async(self.rights.check)()  # remembers the user's current revision
        # Closes this socket within seconds of a logout or of losing sight of the VM.
        self.guard = asyncio.ensure_future(self.watch_rights(self.rights.check, "console presence"))
        await self.send_presence()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            request = json.loads(text_data or "")
        except ValueError:
            request = None
        kind = request.get("type") if isinstance(request, dict) else None
        if kind not in ("takeover", "handover"):
            await self.send_json(
                {"type": "error", "message": 'Send {"type": "takeover" or "handover", ...}.'}
            )
            return
        answer = await sync_to_async(self.change_control, thread_sensitive=False)(
            kind, str(request.get("session", "")), str(request.get("to", ""))
        )
        if answer:
            await self.send_json({"type": "error", "message": answer})

    def change_control(self, kind: str, session_id: str, target_id: str) -> str | None:
        """Take or hand over control of the VM's graphical console (sessions.change_control)."""
        if self.action != Action.CONSOLE:
            return "Your role may only watch this console."
        return sessions.change_control(self.scope["user"], self.vm.pk, kind, session_id, target_id)

    async def disconnect(self, code: int) -> None:
        if self.guard is not None and self.guard is not asyncio.current_task():
            self.guard.cancel()
        await self.leave()
