"""SSH tunnels to the VNC of VMs on remote hosts: never a direct connection to a VNC port over the network.

A host reached over `qemu+ssh://user@host:port/...` (or libssh/libssh2) keeps its VMs' VNC on its own
loopback. For one console, open_tunnel() logs in to the host over SSH with the host's stored private key,
verifying the host key against the host's stored known_hosts (an unknown or changed key is refused, never
trusted), opens a `direct-tcpip` channel to the VNC port on the host's loopback, and offers it on a
private UNIX socket (in a 0700 directory) that websockify connects to once. The tunnel ends with the
console.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import select
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import paramiko

logger = logging.getLogger("vireo.console")

SSH_TRANSPORTS = frozenset({"ssh", "libssh", "libssh2"})
#: Seconds websockify has to connect to the tunnel's socket once it is offered.
ACCEPT_TIMEOUT = 15.0
CHUNK = 65536


class TunnelError(Exception):
    """The SSH tunnel could not be opened; the message says why."""


@dataclass(frozen=True)
class SshTarget:
    """Where to log in for a host's console tunnel."""

    username: str
    hostname: str
    port: int


def ssh_target(uri: str) -> SshTarget | None:
    """The SSH login of a libvirt URI over SSH (qemu+ssh://user@host:port/system), or None for others."""
    parts = urlsplit(uri.strip())
    _driver, _, transport = parts.scheme.partition("+")
    if transport not in SSH_TRANSPORTS or not parts.hostname:
        return None
    return SshTarget(username=parts.username or "root", hostname=parts.hostname, port=parts.port or 22)


def load_private_key(text: str) -> paramiko.PKey:
    """A private key from its PEM/OpenSSH text (Ed25519, ECDSA or RSA); TunnelError if unreadable."""
    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise TunnelError(
        "The host's stored SSH private key cannot be read (Ed25519, ECDSA or RSA, unencrypted)."
    )


def connect(
    target: SshTarget, private_key: str | None, known_hosts: str | None, timeout: float
) -> paramiko.SSHClient:
    """An SSH session to `target`, with the host key verified against `known_hosts`."""
    if not private_key:
        raise TunnelError("The host has no stored SSH private key: add one to reach its consoles.")
    if not (known_hosts or "").strip():
        raise TunnelError("The host has no stored known_hosts: Vireo never trusts an unknown host key.")
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with tempfile.NamedTemporaryFile("w", prefix="vireo-known-hosts-", delete=True) as hosts_file:
        hosts_file.write(known_hosts or "")
        hosts_file.flush()
        client.get_host_keys().load(hosts_file.name)
    try:
        client.connect(
            target.hostname,
            port=target.port,
            username=target.username,
            pkey=load_private_key(private_key),
            allow_agent=False,
            look_for_keys=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise TunnelError(
            f"{target.hostname}'s SSH host key does not match the stored one: refused."
        ) from exc
    except paramiko.SSHException as exc:
        client.close()
        raise TunnelError(f"SSH to {target.hostname}:{target.port} failed: {exc}") from exc
    except OSError as exc:
        client.close()
        raise TunnelError(f"Cannot reach {target.hostname}:{target.port} over SSH: {exc}") from exc
    return client


def _pump(conn: socket.socket, channel: paramiko.Channel, client: paramiko.SSHClient) -> None:
    """Copy bytes both ways until either side closes, then close everything."""
    try:
        while True:
            readable, _, _ = select.select([conn, channel], [], [])
            if conn in readable:
                data = conn.recv(CHUNK)
                if not data:
                    break
                channel.sendall(data)
            if channel in readable:
                data = channel.recv(CHUNK)
                if not data:
                    break
                conn.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            conn.close()
        channel.close()
        client.close()


def tunnel_path() -> str:
    """A fresh path for a tunnel's UNIX socket, in a new private (0700) directory; open_tunnel() binds it."""
    directory = tempfile.mkdtemp(prefix="vireo-console-")
    os.chmod(directory, 0o700)
    return os.path.join(directory, "vnc.sock")


def discard_path(path: str) -> None:
    """Remove a tunnel socket's directory (when the tunnel is not opened after all)."""
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def open_tunnel(
    uri: str,
    private_key: str | None,
    known_hosts: str | None,
    remote_host: str,
    remote_port: int,
    path: str,
    *,
    timeout: float = 10.0,
) -> None:
    """Open an SSH tunnel to `remote_host:remote_port` as seen from the host of `uri`, offered on the UNIX
    socket `path` (from tunnel_path()) for one connection. TunnelError if it cannot be opened."""
    target = ssh_target(uri)
    if target is None:
        raise TunnelError(f"{uri} is not reached over SSH.")
    client = connect(target, private_key, known_hosts, timeout)
    try:
        transport = client.get_transport()
        assert transport is not None
        channel = transport.open_channel(
            "direct-tcpip", (remote_host, remote_port), ("127.0.0.1", 0), timeout=timeout
        )
    except (paramiko.SSHException, OSError) as exc:
        client.close()
        raise TunnelError(
            f"{target.hostname} refused the tunnel to its VNC ({remote_host}:{remote_port}): {exc}"
        ) from exc
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    listener.settimeout(ACCEPT_TIMEOUT)
    logger.info(
        "console tunnel open: %s@%s:%s -> %s:%s",
        target.username,
        target.hostname,
        target.port,
        remote_host,
        remote_port,
    )

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            logger.warning("console tunnel to %s: nobody connected", target.hostname)
            channel.close()
            client.close()
            return
        finally:
            listener.close()
            discard_path(path)
        conn.settimeout(None)
        _pump(conn, channel, client)

    threading.Thread(target=serve, name="console-tunnel", daemon=True).start()
