"""validate_uri(), is_remote() and prepared_uri()."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from apps.virt import Credentials, InvalidInput, is_remote, prepared_uri, validate_uri


@pytest.mark.parametrize(
    ("uri", "normalized"),
    [
        ("qemu:///system", "qemu:///system"),
        ("  qemu:///session ", "qemu:///session"),
        ("QEMU+SSH://admin@kvm1.example.com/system", "qemu+ssh://admin@kvm1.example.com/system"),
        ("qemu+ssh://root@10.0.0.5:2222/system", "qemu+ssh://root@10.0.0.5:2222/system"),
        ("qemu+tls://kvm1.example.com/system", "qemu+tls://kvm1.example.com/system"),
        ("qemu+tcp://10.0.0.5:16509/system", "qemu+tcp://10.0.0.5:16509/system"),
        ("qemu+libssh2://u@h/system", "qemu+libssh2://u@h/system"),
        ("qemu+ssh://u@[2001:db8::1]:22/system", "qemu+ssh://u@[2001:db8::1]:22/system"),
        (
            "qemu+unix:///system?socket=/run/libvirt/libvirt-sock",
            "qemu+unix:///system?socket=/run/libvirt/libvirt-sock",
        ),
        ("qemu+ssh://u@h/system?mode=direct&proxy=native", "qemu+ssh://u@h/system?mode=direct&proxy=native"),
        ("test:///default", "test:///default"),
        ("test:///tmp/node.xml", "test:///tmp/node.xml"),
        ("lxc:///", "lxc:///"),
        ("xen:///system", "xen:///system"),
        ("ch:///system", "ch:///system"),
    ],
)
def test_accepted(uri: str, normalized: str) -> None:
    assert validate_uri(uri) == normalized


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("qemu:///system\n", None),  # trailing whitespace is stripped, so this one is fine: see below
        ("qemu:///sys\ntem", "control characters"),
        ("qemu:///sys\x00tem", "control characters"),
        ("qemu+ssh://h/sys tem", "control characters"),
        ("not a uri", "control characters"),
        ("notauri", "not a URI"),
        ("/var/run/libvirt/libvirt-sock", "not a URI"),
        ("foo:///system", "not a libvirt driver"),
        ("http://example.com/", "not a libvirt driver"),
        ("qemu+ext:///system?command=/bin/sh", "'ext' transport"),
        ("qemu+carrier-pigeon://h/system", "not a libvirt transport"),
        ("qemu+tls://h/system?no_verify=1", "no_verify"),
        ("qemu+ssh://h/system?no_verify", "no_verify"),
        ("qemu+ssh://h/system?command=/tmp/x", "command"),
        ("qemu+ssh://h/system?netcat=/tmp/evil", "netcat"),
        ("qemu+ssh://h/system?keyfile=x", "keyfile"),
        ("qemu+tls://h/system?pkipath=/etc/pki", "pkipath"),
        ("qemu+ssh://h/system?known_hosts=/dev/null", "known_hosts"),
        ("qemu+ssh://h/system?known_hosts_verify=ignore", "known_hosts_verify"),
        ("qemu+ssh://h/system?authfile=/etc/shadow", "authfile"),
        ("qemu+ssh://h/system?whatever=1", "not supported"),
        ("qemu+ssh://h/system?socket=/run/x;reboot", "not allowed"),
        ("qemu+ssh://-oProxyCommand=x/system", "host name"),
        ("qemu+ssh://-l@h/system", "user name"),
        ("qemu+ssh://u@h:99999/system", "port"),
        ("qemu+ssh:///system", "needs a host"),
        ("qemu:///embed?root=/tmp", "/system or /session"),
        ("qemu:///nonsense", "/system or /session"),
        ("test:///etc/passwd", "test:///default"),
        ("test:///../x.xml", ".."),
        ("qemu:///system#frag", "fragment"),
    ],
)
def test_refused(uri: str, why: str | None) -> None:
    if why is None:
        assert validate_uri(uri) == "qemu:///system"
        return
    with pytest.raises(InvalidInput) as info:
        validate_uri(uri)
    assert why in info.value.message
    assert info.value.message.endswith(".")


def test_non_string_is_refused() -> None:
    with pytest.raises(InvalidInput):
        validate_uri(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("uri", "remote"),
    [
        ("qemu:///system", False),
        ("test:///default", False),
        ("lxc:///", False),
        ("qemu+unix:///system", False),
        ("qemu+ssh://u@h/system", True),
        ("qemu+tls:///system", True),
        ("qemu://kvm1/system", True),
        ("qemu+tcp://127.0.0.1/system", True),
    ],
)
def test_is_remote(uri: str, remote: bool) -> None:
    assert is_remote(uri) is remote


KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----"
KNOWN = "kvm1.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA"


def _mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_prepared_uri_without_credentials_is_unchanged() -> None:
    with prepared_uri("qemu+ssh://u@kvm1/system") as uri:
        assert uri == "qemu+ssh://u@kvm1/system"
    with prepared_uri("test:///default", Credentials()) as uri:
        assert uri == "test:///default"


def test_prepared_uri_ssh_writes_private_files_and_removes_them() -> None:
    creds = Credentials(ssh_private_key=KEY, known_hosts=KNOWN)
    with prepared_uri("qemu+ssh://admin@kvm1.example.com:2222/system?mode=direct", creds) as uri:
        parts = urlsplit(uri)
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        assert parts.scheme == "qemu+libssh"
        assert parts.netloc == "admin@kvm1.example.com:2222" and parts.path == "/system"
        assert params["known_hosts_verify"] == "normal"
        assert params["sshauth"] == "privkey"
        assert params["mode"] == "direct"
        assert "no_verify" not in params and "StrictHostKeyChecking" not in uri
        keyfile, known_hosts = Path(params["keyfile"]), Path(params["known_hosts"])
        assert keyfile.parent == known_hosts.parent
        directory = keyfile.parent
        assert _mode(directory) == 0o700
        assert _mode(keyfile) == 0o600 and _mode(known_hosts) == 0o600
        assert keyfile.read_text().strip() == KEY
        assert known_hosts.read_text().strip() == KNOWN
    assert not directory.exists()


def test_prepared_uri_ssh_without_known_hosts_still_verifies() -> None:
    with prepared_uri("qemu+ssh://u@h/system", Credentials(ssh_private_key=KEY)) as uri:
        params = {k: v[0] for k, v in parse_qs(urlsplit(uri).query, keep_blank_values=True).items()}
        assert params["known_hosts_verify"] == "normal"
        assert Path(params["known_hosts"]).read_text().strip() == ""


def test_prepared_uri_ssh_agent_when_only_known_hosts() -> None:
    with prepared_uri("qemu+ssh://u@h/system", Credentials(known_hosts=KNOWN)) as uri:
        params = parse_qs(urlsplit(uri).query)
        assert params["sshauth"] == ["agent"] and "keyfile" not in params


def test_prepared_uri_tls_writes_pki_dir_and_removes_it() -> None:
    creds = Credentials(tls_ca_cert="CA", tls_client_cert="CERT", tls_client_key="KEY")
    with prepared_uri("qemu+tls://kvm1.example.com/system", creds) as uri:
        parts = urlsplit(uri)
        assert parts.scheme == "qemu+tls"
        directory = Path(parse_qs(parts.query)["pkipath"][0])
        assert _mode(directory) == 0o700
        for name, content in (("cacert.pem", "CA"), ("clientcert.pem", "CERT"), ("clientkey.pem", "KEY")):
            assert (directory / name).read_text().strip() == content
            assert _mode(directory / name) == 0o600
    assert not directory.exists()


def test_prepared_uri_removes_dir_on_error() -> None:
    creds = Credentials(ssh_private_key=KEY, known_hosts=KNOWN)
    with pytest.raises(RuntimeError), prepared_uri("qemu+ssh://u@h/system", creds) as uri:
        directory = Path(parse_qs(urlsplit(uri).query)["keyfile"][0]).parent
        raise RuntimeError("boom")
    assert not directory.exists()


def test_prepared_uri_validates() -> None:
    with pytest.raises(InvalidInput), prepared_uri("qemu+ssh://h/system?command=x", Credentials(KEY)):
        pass


def test_credentials_repr_hides_secrets() -> None:
    text = repr(Credentials(ssh_private_key=KEY, known_hosts=KNOWN))
    assert "PRIVATE" not in text and "ssh_private_key" in text
