"""cloud-init NoCloud seed ISOs: meta-data and user-data built from validated values, written with pycdlib,
and uploaded into a storage pool as a volume (attached to the VM as a CD-ROM).

The documents are JSON, which is valid YAML for cloud-init, so no user value is ever formatted into YAML
by hand. A user's own user-data is kept verbatim and combined with Vireo's part as a MIME multipart
archive, which cloud-init merges.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
from dataclasses import dataclass, field
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import libvirt
import pycdlib
from lxml import etree

from .builder import InvalidSpec, validate_text
from .errors import InvalidInput, translated

VOLUME_LABEL = "CIDATA"  # NoCloud looks for a filesystem with this label
USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
HOSTNAME_RE = re.compile(r"(?=.{1,63}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?")
SSH_KEY_RE = re.compile(
    r"(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)"
    r" [A-Za-z0-9+/]+={0,3}( [^\r\n]{0,200})?"
)
PASSWORD_HASH_RE = re.compile(r"\$6\$(rounds=\d{4,9}\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{86}")
RESERVED_USERS = {"root", "daemon", "bin", "sys", "nobody"}
USER_DATA_MAX = 64 * 1024


@dataclass
class CloudInitSpec:
    """What a VM's first boot should set up: one user (password and/or SSH keys), a hostname, and
    optionally the user's own user-data (a #cloud-config document or a script)."""

    hostname: str = ""
    user: str = ""
    password: str = ""
    password_hash: str = ""
    ssh_keys: list[str] = field(default_factory=list)
    user_data: str = ""
    instance_id: str = ""

    @property
    def empty(self) -> bool:
        """Whether nothing at all was asked for."""
        return not (
            self.hostname
            or self.user
            or self.password
            or self.password_hash
            or self.ssh_keys
            or self.user_data
        )


def validate_cloud_init(spec: CloudInitSpec) -> CloudInitSpec:
    """Check every value; InvalidSpec (by field, prefixed "cloud_init.") listing what is wrong."""
    errors: dict[str, str] = {}
    if spec.hostname and not HOSTNAME_RE.fullmatch(spec.hostname):
        errors["cloud_init.hostname"] = (
            "Use letters, digits and '-' (1 to 63, not starting or ending with '-')."
        )
    if spec.user:
        if not USER_RE.fullmatch(spec.user):
            errors["cloud_init.user"] = "Use a Linux user name: lower-case letters, digits, '_' and '-'."
        elif spec.user in RESERVED_USERS:
            errors["cloud_init.user"] = f"{spec.user!r} is a system account; choose another name."
    if spec.password_hash and not PASSWORD_HASH_RE.fullmatch(spec.password_hash):
        errors["cloud_init.password"] = "The stored password hash is not a SHA-512 crypt hash."
    if (spec.password or spec.password_hash or spec.ssh_keys) and not spec.user:
        errors["cloud_init.user"] = "A password or SSH keys need a user name."
    if spec.password:
        if len(spec.password) < 8 or len(spec.password) > 256:
            errors["cloud_init.password"] = "Use 8 to 256 characters."
        elif any(c in spec.password for c in "\r\n\x00"):
            errors["cloud_init.password"] = "A password cannot contain line breaks."
    keys = []
    for key in spec.ssh_keys:
        key = key.strip()
        if not key:
            continue
        if not SSH_KEY_RE.fullmatch(key):
            errors["cloud_init.ssh_keys"] = (
                "Each line must be one OpenSSH public key (ssh-ed25519 AAAA... comment)."
            )
            break
        keys.append(key)
    spec.ssh_keys = keys
    if spec.user_data:
        try:
            validate_text(spec.user_data, "cloud_init.user_data", max_length=USER_DATA_MAX, single_line=False)
        except InvalidSpec as exc:
            errors.update(exc.errors)
        else:
            if not spec.user_data.startswith(("#cloud-config", "#!")):
                errors["cloud_init.user_data"] = (
                    "User-data must start with '#cloud-config' (a cloud-config document) or '#!' (a script)."
                )
    if spec.instance_id and not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", spec.instance_id):
        errors["cloud_init.instance_id"] = "Not a valid instance id."
    if errors:
        raise InvalidSpec(errors)
    return spec


def hash_password(password: str) -> str:
    """A SHA-512 crypt hash of `password` (openssl, password given on stdin, never on a command line)."""
    try:
        done = subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"],
            input=password,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise InvalidInput(f"Could not hash the cloud-init password (openssl: {exc}).") from exc
    hashed = done.stdout.strip()
    if not hashed.startswith("$6$"):
        raise InvalidInput("Could not hash the cloud-init password (unexpected openssl output).")
    return hashed


def meta_data(spec: CloudInitSpec, default_hostname: str) -> str:
    """The NoCloud meta-data document (JSON, which cloud-init reads as YAML)."""
    document = {
        "instance-id": spec.instance_id or f"iid-{default_hostname}",
        "local-hostname": spec.hostname or default_hostname,
    }
    return json.dumps(document, indent=2) + "\n"


def vireo_cloud_config(spec: CloudInitSpec, default_hostname: str) -> dict:
    """The cloud-config Vireo makes from the structured fields."""
    config: dict = {"hostname": spec.hostname or default_hostname}
    if spec.user:
        user: dict = {
            "name": spec.user,
            "groups": ["sudo"],
            "shell": "/bin/bash",
            "sudo": ["ALL=(ALL) NOPASSWD:ALL"],
            "lock_passwd": not (spec.password or spec.password_hash),
        }
        if spec.password_hash or spec.password:
            user["passwd"] = spec.password_hash or hash_password(spec.password)
        if spec.ssh_keys:
            user["ssh_authorized_keys"] = list(spec.ssh_keys)
        config["users"] = ["default", user]
        config["ssh_pwauth"] = bool(spec.password or spec.password_hash)
    return config


def user_data(spec: CloudInitSpec, default_hostname: str) -> str:
    """The user-data document: Vireo's #cloud-config, merged with the user's own as MIME multipart."""
    ours = "#cloud-config\n" + json.dumps(vireo_cloud_config(spec, default_hostname), indent=2) + "\n"
    if not spec.user_data:
        return ours
    archive = MIMEMultipart(boundary="===vireo-cloud-init===")
    archive.attach(MIMEText(ours, "cloud-config", "utf-8"))
    theirs = spec.user_data
    subtype = "x-shellscript" if theirs.startswith("#!") else "cloud-config"
    archive.attach(MIMEText(theirs, subtype, "utf-8"))
    return archive.as_string()


def build_seed_iso(spec: CloudInitSpec, default_hostname: str) -> bytes:
    """A NoCloud seed ISO (label CIDATA, files meta-data and user-data) as bytes."""
    validate_cloud_init(spec)
    files = {
        "meta-data": meta_data(spec, default_hostname).encode(),
        "user-data": user_data(spec, default_hostname).encode(),
    }
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=VOLUME_LABEL)
    for index, (name, data) in enumerate(files.items()):
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            f"/FILE{index}.;1",
            rr_name=name,
            joliet_path=f"/{name}",
        )
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def read_seed_iso(data: bytes) -> dict[str, str]:
    """The files of a seed ISO by their Rock Ridge names (for checks and tests)."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        found = {}
        for child in iso.list_children(rr_path="/"):
            if child.is_dot() or child.is_dotdot():
                continue
            name = child.rock_ridge.name().decode()
            buffer = io.BytesIO()
            iso.get_file_from_iso_fp(buffer, rr_path=f"/{name}")
            found[name] = buffer.getvalue().decode()
        found["__label__"] = iso.pvd.volume_identifier.decode().strip()
        return found
    finally:
        iso.close()


def upload_volume(conn: libvirt.virConnect, pool: str, name: str, data: bytes, fmt: str = "raw") -> str:
    """Create volume `name` in `pool` holding exactly `data` (streamed to the host); returns its path.

    The caller validates `name`. A half-written volume is deleted before the error is raised.
    """
    with translated(f"storage pool {pool}"):
        target = conn.storagePoolLookupByName(pool)
        target.refresh(0)
        if len(data) > target.info()[3]:
            raise InvalidInput(f"Storage pool {pool} has no room for the {len(data)} byte volume {name}.")
        vol_el = etree.Element("volume")
        etree.SubElement(vol_el, "name").text = name
        etree.SubElement(vol_el, "capacity", unit="bytes").text = str(len(data))
        etree.SubElement(etree.SubElement(vol_el, "target"), "format", type=fmt)
        vol = target.createXML(etree.tostring(vol_el, encoding="unicode"), 0)
    try:
        with translated(f"volume {name}"):
            stream = conn.newStream(0)
            vol.upload(stream, 0, len(data), 0)
            try:
                view = memoryview(data)
                sent = 0
                while sent < len(data):
                    sent += stream.send(bytes(view[sent : sent + 256 * 1024]))
                stream.finish()
            except libvirt.libvirtError:
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()
                raise
            return vol.path()
    except Exception:
        with contextlib.suppress(libvirt.libvirtError):
            vol.delete(0)
        raise
