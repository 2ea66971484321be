"""cloud-init NoCloud seed ISOs: validation, and the meta-data/user-data the ISO really contains."""

from __future__ import annotations

import email
import json
import subprocess

import pytest

from apps.virt.builder import InvalidSpec
from apps.virt.cloudinit import CloudInitSpec, build_seed_iso, read_seed_iso, validate_cloud_init

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9vZm9vZm9vZm9vZm9vZm9vZm9vZm9vZm9vZm9vZm9v alice@laptop"


def _cloud_config(text: str) -> dict:
    assert text.startswith("#cloud-config\n")
    return json.loads(text.split("\n", 1)[1])


def test_seed_iso_contents():
    spec = CloudInitSpec(hostname="web1", user="alice", password="s3cret-pass", ssh_keys=[KEY, ""])
    files = read_seed_iso(build_seed_iso(spec, "vm-web1"))
    assert files["__label__"] == "CIDATA"
    meta = json.loads(files["meta-data"])
    assert meta == {"instance-id": "iid-vm-web1", "local-hostname": "web1"}
    config = _cloud_config(files["user-data"])
    user = config["users"][1]
    assert config["hostname"] == "web1" and config["ssh_pwauth"] is True
    assert user["name"] == "alice" and user["ssh_authorized_keys"] == [KEY]
    assert user["passwd"].startswith("$6$") and "s3cret-pass" not in files["user-data"]
    check = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", user["passwd"].split("$")[2], "-stdin"],
        input="s3cret-pass",
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.strip() == user["passwd"]


def test_own_user_data_is_merged_as_multipart():
    own = "#cloud-config\npackages: [nginx]\n"
    spec = CloudInitSpec(user="bob", ssh_keys=[KEY], user_data=own)
    files = read_seed_iso(build_seed_iso(spec, "vm2"))
    message = email.message_from_string(files["user-data"])
    assert message.is_multipart()
    parts = [(p.get_content_type(), p.get_payload(decode=True).decode()) for p in message.get_payload()]
    assert parts[0][0] == "text/cloud-config" and _cloud_config(parts[0][1])["users"][1]["name"] == "bob"
    assert parts[1] == ("text/cloud-config", own)
    assert json.loads(files["meta-data"])["local-hostname"] == "vm2"
    script = CloudInitSpec(user_data="#!/bin/sh\necho hi\n")
    parts = email.message_from_string(read_seed_iso(build_seed_iso(script, "v"))["user-data"]).get_payload()
    assert parts[1].get_content_type() == "text/x-shellscript"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (CloudInitSpec(hostname="bad host"), "cloud_init.hostname"),
        (CloudInitSpec(hostname="-x"), "cloud_init.hostname"),
        (CloudInitSpec(user="Root<"), "cloud_init.user"),
        (CloudInitSpec(user="root", password="longenough"), "cloud_init.user"),
        (CloudInitSpec(password="longenough"), "cloud_init.user"),
        (CloudInitSpec(user="a", password="short"), "cloud_init.password"),
        (CloudInitSpec(user="a", password="line\nbreak!"), "cloud_init.password"),
        (CloudInitSpec(user="a", ssh_keys=["not a key"]), "cloud_init.ssh_keys"),
        (CloudInitSpec(user="a", ssh_keys=[KEY + "\nssh-rsa AAAA"]), "cloud_init.ssh_keys"),
        (CloudInitSpec(user_data="packages: [x]"), "cloud_init.user_data"),
        (CloudInitSpec(user_data="#cloud-config\n\x00"), "cloud_init.user_data"),
    ],
)
def test_bad_values(spec, field):
    with pytest.raises(InvalidSpec) as err:
        validate_cloud_init(spec)
    assert field in err.value.errors


def test_markup_in_values_stays_data():
    """Quotes, braces and YAML syntax in the user data are carried verbatim, never interpreted by us."""
    own = '#cloud-config\nruncmd:\n  - echo "<&>\' {{x}}: - [a]"\n'
    files = read_seed_iso(build_seed_iso(CloudInitSpec(user_data=own), "v"))
    payload = email.message_from_string(files["user-data"]).get_payload()[1].get_payload(decode=True)
    assert payload.decode() == own
