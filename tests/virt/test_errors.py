"""translate(): libvirt errors become the right VirtError subclass with a readable message."""

from __future__ import annotations

import libvirt
import pytest

from apps.virt import (
    AuthenticationFailed,
    HostUnreachable,
    InvalidInput,
    InvalidState,
    NotFound,
    Unsupported,
    VirtError,
    open_connection,
    translate,
    translated,
)
from apps.virt.errors import clean_message


def _raise(call) -> libvirt.libvirtError:  # type: ignore[no-untyped-def]
    with pytest.raises(libvirt.libvirtError) as info:
        call()
    return info.value


def test_not_found_domain(default_conn: libvirt.virConnect) -> None:
    exc = _raise(lambda: default_conn.lookupByUUIDString("00000000-0000-0000-0000-000000000000"))
    err = translate(exc, "VM web1")
    assert isinstance(err, NotFound)
    assert err.code == libvirt.VIR_ERR_NO_DOMAIN
    assert str(err) == err.message
    assert err.message.startswith("VM web1: ")
    assert "refresh" in err.message


def test_not_found_network_and_pool_strip_prefix(default_conn: libvirt.virConnect) -> None:
    net = translate(_raise(lambda: default_conn.networkLookupByName("nope")), "network nope")
    pool = translate(_raise(lambda: default_conn.storagePoolLookupByName("nope")), "pool nope")
    assert isinstance(net, NotFound) and isinstance(pool, NotFound)
    assert "Network not found:" not in net.message
    assert "nope" in net.message and "nope" in pool.message


def test_operation_invalid_is_invalid_state_without_noise(default_conn: libvirt.virConnect) -> None:
    err = translate(_raise(lambda: default_conn.networkLookupByName("default").create()), "network default")
    assert isinstance(err, InvalidState)
    assert "Requested operation is not valid" not in err.message
    assert err.message.startswith("network default: Network 'default' is already running.")


def test_xml_error_is_invalid_input(default_conn: libvirt.virConnect) -> None:
    xml = (
        "<domain type='test'><name>x</name><memory>1</memory><os><type>hvm</type></os>"
        "<devices><interface type='network'/></devices></domain>"
    )
    err = translate(_raise(lambda: default_conn.defineXML(xml)))
    assert isinstance(err, InvalidInput)
    assert not err.message.lower().startswith("xml error")
    assert err.message.endswith("Correct the value and try again.")


def test_duplicate_name_is_invalid_input(default_conn: libvirt.virConnect) -> None:
    xml = (
        "<domain type='test'><name>test</name><uuid>11111111-2222-3333-4444-555555555555</uuid>"
        "<memory>1024</memory><os><type>hvm</type></os></domain>"
    )
    err = translate(_raise(lambda: default_conn.defineXML(xml)), "VM test")
    assert isinstance(err, InvalidInput)
    assert "already exists" in err.message


def test_no_support_names_the_api(default_conn: libvirt.virConnect) -> None:
    err = translate(_raise(lambda: default_conn.getDomainCapabilities()))
    assert isinstance(err, Unsupported)
    assert "virConnectGetDomainCapabilities" in err.message


def test_invalid_arg(default_conn: libvirt.virConnect) -> None:
    err = translate(_raise(lambda: default_conn.lookupByName("test").setVcpus(1000)), "VM test")
    assert isinstance(err, InvalidInput)
    assert "invalid argument" not in err.message.lower()


def test_connection_refused_is_host_unreachable() -> None:
    exc = _raise(lambda: libvirt.open("qemu+tcp://127.0.0.1:1/system"))
    err = translate(exc, "host 127.0.0.1")
    assert isinstance(err, HostUnreachable)
    assert err.message.startswith("Cannot reach host 127.0.0.1: ")
    assert "Connection refused" in err.message
    assert "libvirtd is running" in err.message


def test_missing_tls_certificate_is_authentication_failure(tmp_path) -> None:  # type: ignore[no-untyped-def]
    err = translate(
        _raise(lambda: libvirt.open(f"qemu+tls://127.0.0.1:1/system?pkipath={tmp_path}")), "host h"
    )
    assert isinstance(err, AuthenticationFailed)
    assert err.message.startswith("Authentication to host h failed: ")


def test_unknown_driver_is_unsupported() -> None:
    err = translate(_raise(lambda: libvirt.open("nosuchdriver:///x")))
    assert isinstance(err, Unsupported)


def test_translated_context_manager(default_conn: libvirt.virConnect) -> None:
    with pytest.raises(NotFound) as info, translated("VM ghost"):
        default_conn.lookupByName("ghost")
    assert isinstance(info.value.__cause__, libvirt.libvirtError)
    assert "VM ghost" in str(info.value)


def test_translated_leaves_other_exceptions_alone() -> None:
    with pytest.raises(ZeroDivisionError), translated("x"):
        1 / 0  # noqa: B018


def test_subclasses_share_base() -> None:
    for cls in (HostUnreachable, AuthenticationFailed, NotFound, InvalidState, InvalidInput, Unsupported):
        assert issubclass(cls, VirtError)
    err = VirtError("Something happened.", 9)
    assert str(err) == "Something happened." and err.code == 9


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Requested operation is not valid: domain is not running", "Domain is not running"),
        ("internal error: invalid argument: bad thing.", "Bad thing"),
        ("Domain not found: no domain with matching name 'x'", "No domain with matching name 'x'"),
        ("", "Unknown libvirt error"),
        ("  multi\n  line  ", "Multi line"),
    ],
)
def test_clean_message(raw: str, clean: str) -> None:
    assert clean_message(raw) == clean


def test_open_connection_translates_with_host_label() -> None:
    with pytest.raises(HostUnreachable) as info:
        open_connection("qemu+tcp://127.0.0.1:1/system", timeout=5)
    assert "host 127.0.0.1" in str(info.value)
