"""Validation of libvirt connection URIs, and preparing them with Vireo-managed credentials."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, quote, urlsplit

from .errors import InvalidInput


@dataclass
class Credentials:
    """Secrets Vireo keeps for a host, as PEM/OpenSSH text (never paths)."""

    ssh_private_key: str | None = None
    known_hosts: str | None = None
    tls_ca_cert: str | None = None
    tls_client_cert: str | None = None
    tls_client_key: str | None = None

    def __repr__(self) -> str:
        given = [name for name, value in vars(self).items() if value]
        return f"Credentials(<{', '.join(given) or 'empty'}>)"


DRIVERS = frozenset(
    {
        "qemu",
        "test",
        "lxc",
        "xen",
        "libxl",
        "xenapi",
        "vbox",
        "vmwareplayer",
        "vmwarews",
        "vmwarefusion",
        "esx",
        "gsx",
        "vpx",
        "hyperv",
        "bhyve",
        "ch",
        "vz",
        "parallels",
        "openvz",
        "uml",
        "phyp",
        "remote",
    }
)
TRANSPORTS = frozenset({"tls", "tcp", "unix", "ssh", "libssh", "libssh2"})
SSH_TRANSPORTS = frozenset({"ssh", "libssh", "libssh2"})
NETWORK_TRANSPORTS = frozenset({"tls", "tcp"}) | SSH_TRANSPORTS

# Parameters that run programs, weaken verification, or point libvirt at files Vireo manages itself.
_REFUSED_PARAMS = {
    "command": "it runs an arbitrary program",
    "netcat": "it runs an arbitrary program on the host",
    "no_verify": "it disables certificate or host-key verification",
    "known_hosts_verify": "Vireo always verifies the host key itself",
    "keyfile": "Vireo manages SSH keys itself; add the key to the host's credentials",
    "known_hosts": "Vireo manages known host keys itself; add them to the host's credentials",
    "pkipath": "Vireo manages TLS certificates itself; add them to the host's credentials",
    "authfile": "Vireo does not read local credential files",
}
_ALLOWED_PARAMS = frozenset(
    {
        "name",
        "socket",
        "mode",
        "proxy",
        "auth",
        "sshauth",
        "no_tty",
        "no_sanity",
        "tls_priority",
        "transport",
        "vcenter",
        "auto_answer",
    }
)
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.,:/@+%=-]*$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*\.?$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f]")


def _refuse(uri: str, why: str) -> InvalidInput:
    return InvalidInput(f"The connection URI {uri!r} is not accepted: {why}.")


def _check_host(uri: str, netloc: str) -> None:
    user, _, hostport = netloc.rpartition("@")
    if user and not _USER.match(user):
        raise _refuse(uri, f"the user name {user!r} is not valid")
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        if not re.fullmatch(r"[0-9A-Fa-f:.]+", host) or (rest and not rest.startswith(":")):
            raise _refuse(uri, f"{hostport!r} is not a valid IPv6 address")
        port = rest[1:]
    else:
        host, _, port = hostport.partition(":")
        if not _HOSTNAME.match(host):
            raise _refuse(uri, f"{host!r} is not a valid host name or address")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise _refuse(uri, f"the port {port!r} is not a number between 1 and 65535")


def _check_path(uri: str, driver: str, path: str) -> None:
    if ".." in path.split("/"):
        raise _refuse(uri, "the path must not contain '..'")
    if driver == "qemu" and path not in ("/system", "/session"):
        raise _refuse(uri, "a QEMU URI ends in /system or /session (for example qemu:///system)")
    if driver == "test" and path != "/default" and not (path.startswith("/") and path.endswith(".xml")):
        raise _refuse(uri, "a test URI is test:///default or test:///absolute/path/to/node.xml")


def validate_uri(uri: str) -> str:
    """Check a libvirt URI typed by a user and return it normalized; raise InvalidInput saying why not."""
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidInput(
            "The connection URI is empty. Enter one such as qemu:///system or qemu+ssh://user@host/system."
        )
    uri = uri.strip()
    if _CONTROL.search(uri):
        raise _refuse(uri, "it contains spaces or control characters")
    if len(uri) > 1024:
        raise _refuse(uri, "it is longer than 1024 characters")
    parts = urlsplit(uri)
    if not parts.scheme or "://" not in uri:
        raise _refuse(uri, "it is not a URI; use the form driver[+transport]://[user@][host][:port]/path")
    if parts.fragment or uri.endswith("#"):
        raise _refuse(uri, "it must not contain a '#' fragment")
    scheme = parts.scheme.lower()
    driver, _, transport = scheme.partition("+")
    if driver not in DRIVERS:
        raise _refuse(uri, f"{driver!r} is not a libvirt driver (for example qemu, lxc, xen, test)")
    if transport == "ext":
        raise _refuse(uri, "the 'ext' transport runs an arbitrary program")
    if transport and transport not in TRANSPORTS:
        raise _refuse(uri, f"{transport!r} is not a libvirt transport (use ssh, tls, tcp or unix)")
    if parts.netloc:
        _check_host(uri, parts.netloc)
    elif transport in SSH_TRANSPORTS:
        raise _refuse(uri, "an SSH URI needs a host, for example qemu+ssh://user@host/system")
    _check_path(uri, driver, parts.path)
    params = parse_qsl(parts.query, keep_blank_values=True)
    for name, value in params:
        key = name.lower()
        if key in _REFUSED_PARAMS:
            raise _refuse(uri, f"the parameter '{name}' is refused because {_REFUSED_PARAMS[key]}")
        if key not in _ALLOWED_PARAMS:
            raise _refuse(uri, f"the parameter '{name}' is not supported")
        if not _SAFE_VALUE.match(value):
            raise _refuse(uri, f"the value of '{name}' contains characters that are not allowed")
    return _join(scheme, parts.netloc, parts.path, parts.query)


def _join(scheme: str, netloc: str, path: str, query: str) -> str:
    """Rebuild a URI keeping "//" even without a host (urlunsplit would turn test:///x into test:/x)."""
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def is_remote(uri: str) -> bool:
    """True when the URI reaches libvirt over the network (ssh, tls, tcp or a host name)."""
    parts = urlsplit(uri.strip())
    transport = parts.scheme.lower().partition("+")[2]
    return transport in NETWORK_TRANSPORTS or bool(parts.hostname)


def _write(directory: str, name: str, content: str) -> str:
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content if content.endswith("\n") else content + "\n")
    return path


def _with_params(parts: SplitResult, scheme: str, extra: dict[str, str]) -> str:
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in extra]
    query = "&".join(f"{k}={quote(v, safe='/,:@+')}" for k, v in [*kept, *extra.items()])
    return _join(scheme, parts.netloc, parts.path, query)


@contextmanager
def prepared_uri(uri: str, credentials: Credentials | None = None) -> Iterator[str]:
    """Yield the URI to hand to libvirt, with Vireo-managed credentials written to a private temp dir.

    SSH: uses libvirt's built-in libssh transport with our key (sshauth=privkey) and our known_hosts,
    always verifying the host key (known_hosts_verify=normal; an unknown or changed key fails).
    TLS: writes cacert.pem, clientcert.pem and clientkey.pem and sets pkipath.
    The directory (0700, files 0600) is removed when the block ends: libvirt reads them only while
    connecting.
    """
    uri = validate_uri(uri)
    creds = credentials or Credentials()
    parts = urlsplit(uri)
    driver, _, transport = parts.scheme.partition("+")
    wants_ssh = transport in SSH_TRANSPORTS and bool(creds.ssh_private_key or creds.known_hosts)
    wants_tls = transport in ("tls", "") and bool(parts.netloc) and bool(creds.tls_ca_cert)
    if not (wants_ssh or wants_tls):
        yield uri
        return
    directory = tempfile.mkdtemp(prefix="vireo-creds-")
    try:
        os.chmod(directory, 0o700)
        if wants_ssh:
            extra = {
                "known_hosts": _write(directory, "known_hosts", creds.known_hosts or ""),
                "known_hosts_verify": "normal",
                "sshauth": "privkey" if creds.ssh_private_key else "agent",
            }
            if creds.ssh_private_key:
                extra["keyfile"] = _write(directory, "id_key", creds.ssh_private_key)
            yield _with_params(parts, f"{driver}+libssh", extra)
        else:
            _write(directory, "cacert.pem", creds.tls_ca_cert or "")
            if creds.tls_client_cert:
                _write(directory, "clientcert.pem", creds.tls_client_cert)
            if creds.tls_client_key:
                _write(directory, "clientkey.pem", creds.tls_client_key)
            yield _with_params(parts, f"{driver}+tls", {"pkipath": directory})
    finally:
        shutil.rmtree(directory, ignore_errors=True)
