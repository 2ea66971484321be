"""The VirtError hierarchy and the one place where libvirt errors become readable messages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import libvirt


class VirtError(Exception):
    """A failed hypervisor operation, with a message a person can act on."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message


class HostUnreachable(VirtError):
    """The host (or its libvirt daemon) cannot be reached, or the connection was lost."""


class AuthenticationFailed(VirtError):
    """The host refused our credentials, or its identity (host key, certificate) could not be verified."""


class NotFound(VirtError):
    """The object (VM, network, pool, volume...) does not exist on the host."""


class InvalidState(VirtError):
    """The operation does not apply to the object in its current state."""


class InvalidInput(VirtError):
    """A value given to the operation is invalid (bad URI, malformed XML, duplicate name...)."""


class OperationTimeout(VirtError):
    """The host did not answer in time."""


class Unsupported(VirtError):
    """The host, its hypervisor or its libvirt version cannot do this."""


def _codes(*names: str) -> frozenset[int]:
    return frozenset(getattr(libvirt, "VIR_ERR_" + n) for n in names if hasattr(libvirt, "VIR_ERR_" + n))


_UNREACHABLE = _codes("NO_CONNECT", "INVALID_CONN", "RPC", "NO_SERVER", "UNKNOWN_HOST")
_AUTH = _codes(
    "AUTH_FAILED", "AUTH_CANCELLED", "AUTH_UNAVAILABLE", "ACCESS_DENIED", "GNUTLS_ERROR", "SSH", "LIBSSH"
)
_NOT_FOUND = _codes(
    "NO_DOMAIN",
    "NO_NETWORK",
    "NO_STORAGE_POOL",
    "NO_STORAGE_VOL",
    "NO_DOMAIN_SNAPSHOT",
    "NO_INTERFACE",
    "NO_NODE_DEVICE",
    "NO_SECRET",
    "NO_NWFILTER",
    "NO_DOMAIN_CHECKPOINT",
    "NO_NETWORK_PORT",
    "NO_NWFILTER_BINDING",
    "NO_DOMAIN_METADATA",
    "DEVICE_MISSING",
)
_INVALID_STATE = _codes("OPERATION_INVALID", "RESOURCE_BUSY", "BLOCK_COPY_ACTIVE", "STORAGE_POOL_BUILT")
_INVALID_INPUT = _codes(
    "INVALID_ARG",
    "XML_ERROR",
    "XML_DETAIL",
    "XML_INVALID_SCHEMA",
    "INVALID_MAC",
    "DOM_EXIST",
    "NETWORK_EXIST",
    "STORAGE_VOL_EXIST",
    "NETWORK_PORT_EXIST",
    "MULTIPLE_DOMAINS",
    "OVERFLOW",
)
_TIMEOUT = _codes("OPERATION_TIMEOUT", "AGENT_UNRESPONSIVE")
_UNSUPPORTED = _codes(
    "NO_SUPPORT", "OPERATION_UNSUPPORTED", "ARGUMENT_UNSUPPORTED", "CONFIG_UNSUPPORTED", "CPU_INCOMPATIBLE"
)
# SYSTEM_ERROR is also raised for local I/O problems; only these error domains mean "the link failed".
_LINK_DOMAINS = frozenset(
    getattr(libvirt, "VIR_FROM_" + n)
    for n in ("RPC", "REMOTE", "SSH", "LIBSSH")
    if hasattr(libvirt, "VIR_FROM_" + n)
)

# Prefixes libvirt puts in front of the useful part of a message ("Requested operation is not valid: ...").
_NOISE = re.compile(
    r"^(requested operation is not valid|internal error|invalid argument|xml error|operation failed|"
    r"this function is not supported by the connection driver|unsupported configuration|"
    r"operation forbidden|operation not supported|argument unsupported|timed out during operation|"
    r"authentication failed|authentication cancelled|authentication unavailable|access denied|"
    r"(domain|network|storage pool|storage volume|domain snapshot|secret|interface|node device) not found|"
    r"cannot recv data|cannot write data|error from service|resource busy|"
    r"libssh transport error|ssh transport error|%s)\s*:\s*",
    re.IGNORECASE,
)

_HINTS: dict[type[VirtError], str] = {
    HostUnreachable: "Check that libvirtd is running and listening, and that the address is right.",
    AuthenticationFailed: (
        "Check the credentials saved for this host (SSH key and known host key, or TLS certificates)."
    ),
    NotFound: "It may have been deleted or renamed; refresh the inventory.",
    InvalidState: "Refresh to see its current state and try again.",
    InvalidInput: "Correct the value and try again.",
    OperationTimeout: "The host did not answer in time; try again, and check the host's load and network.",
    Unsupported: "This host's hypervisor or libvirt version does not offer it.",
    VirtError: "",
}


def clean_message(text: str) -> str:
    """Strip libvirt's category prefixes from an error text, keeping the useful part."""
    text = " ".join((text or "").split())
    previous = None
    while previous != text:
        previous = text
        text = _NOISE.sub("", text, count=1)
    text = text.strip().rstrip(".")
    return text[:1].upper() + text[1:] if text else "Unknown libvirt error"


def _classify(exc: libvirt.libvirtError) -> type[VirtError]:
    code = exc.get_error_code()
    text = (exc.get_error_message() or str(exc) or "").lower()
    if code == libvirt.VIR_ERR_NO_CONNECT and "no connection driver" in text:
        return Unsupported
    if code == libvirt.VIR_ERR_OPERATION_FAILED and "already exists" in text:
        return InvalidInput
    if code == libvirt.VIR_ERR_SYSTEM_ERROR:
        if "certificate" in text:
            return AuthenticationFailed
        if exc.get_error_domain() in _LINK_DOMAINS or "connect" in text or "resolve" in text:
            return HostUnreachable
        return VirtError
    for codes, cls in (
        (_UNREACHABLE, HostUnreachable),
        (_AUTH, AuthenticationFailed),
        (_NOT_FOUND, NotFound),
        (_INVALID_STATE, InvalidState),
        (_INVALID_INPUT, InvalidInput),
        (_TIMEOUT, OperationTimeout),
        (_UNSUPPORTED, Unsupported),
    ):
        if code in codes:
            return cls
    return VirtError


def compose(cls: type[VirtError], detail: str, context: str = "", hint: str | None = None) -> str:
    """Build the sentence shown to people: what failed, libvirt's reason, and what to do next."""
    detail = detail.rstrip(".")
    if cls is HostUnreachable:
        head = f"Cannot reach {context or 'the host'}: {detail}."
    elif cls is AuthenticationFailed:
        head = f"Authentication to {context or 'the host'} failed: {detail}."
    elif context:
        head = f"{context}: {detail}."
    else:
        head = f"{detail}."
    hint = _HINTS.get(cls, "") if hint is None else hint
    return f"{head} {hint}".strip()


def translate(exc: libvirt.libvirtError, context: str = "") -> VirtError:
    """Turn a libvirt error into the matching VirtError subclass with a readable message.

    `context` names what the operation was about, as a noun phrase ("host kvm1", "VM web1").
    """
    cls = _classify(exc)
    raw = exc.get_error_message() or str(exc)
    detail = clean_message(raw)
    api = re.search(r"supported by the connection driver: (vir\w+)", raw or "")
    if api:
        detail = f"The host's driver does not support {api.group(1)}"
    return cls(compose(cls, detail, context), exc.get_error_code())


@contextmanager
def translated(context: str = "") -> Iterator[None]:
    """Convert any libvirtError raised inside the block into a VirtError (see `translate`)."""
    try:
        yield
    except libvirt.libvirtError as exc:
        raise translate(exc, context) from exc
