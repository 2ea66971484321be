"""The Create VM wizard: General → OS and boot → System → Disks → CPU and memory → Network → Review.

The whole wizard is one form; each "Next" posts it (htmx) to the check view, which validates it with the
same serializer and plan the API uses, shows the errors of the steps so far next to their inputs, and
moves to the next step (or back to the first step with an error). Review shows the domain XML that will
be defined; Create queues the job and opens its page.
"""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST
from rest_framework import exceptions as drf_exceptions

from apps import virt
from apps.core.choices import Action
from apps.core.permissions import restrict
from apps.hosts.models import Host
from apps.networks.services import nic_choices
from apps.storage.models import StoragePool, StorageVolume
from apps.virt.builder import InvalidSpec
from apps.virt.capabilities import CACHE_MODES, DISK_FORMATS, HostCapabilities

from .create_api import VmCreateSerializer, submit_create
from .models import VirtualMachine
from .planning import SOURCES, plan_vm, preview_xml

STEPS = [
    ("general", "General"),
    ("os", "OS and boot"),
    ("system", "System"),
    ("disks", "Disks"),
    ("cpu", "CPU and memory"),
    ("network", "Network"),
    ("review", "Review"),
]
STEP_INDEX = {key: i for i, (key, _label) in enumerate(STEPS)}
FIELD_STEP = {
    **dict.fromkeys(["host", "name", "title", "description", "tags"], "general"),
    **dict.fromkeys(
        [
            "source",
            "iso",
            "kernel",
            "initrd",
            "cmdline",
            "import_volume",
            "import_mode",
            "import_pool",
            "template",
        ],
        "os",
    ),
    **dict.fromkeys(
        ["domain_type", "machine", "firmware", "secure_boot", "tpm", "vnc", "video", "serial"], "system"
    ),
    **dict.fromkeys(["disks", "disk_bus", "cdrom"], "disks"),
    **dict.fromkeys(
        [
            "vcpus",
            "max_vcpus",
            "sockets",
            "cores",
            "threads",
            "cpu_mode",
            "cpu_model",
            "memory_mib",
            "max_memory_mib",
        ],
        "cpu",
    ),
    **dict.fromkeys(["nics", "cloud_init", "boot_order"], "network"),
}
# Rows the page starts with; "Add a disk" and "Add a NIC" add more (the API's limits apply).
DISK_ROWS = 2
NIC_ROWS = 2
SOURCE_LABELS = {
    "iso": "Install from an ISO image",
    "import": "Import an existing disk image",
    "template": "From a template",
    "pxe": "Network boot (PXE)",
    "kernel": "Direct kernel boot",
    "empty": "Empty VM (add media later)",
}
_CAPS_TTL = 300.0
_caps_cache: dict[tuple[int, str, str], tuple[float, HostCapabilities]] = {}


def step_of(field: str) -> str:
    """The wizard step where `field` (e.g. "disks.0.size_mib") is entered."""
    return FIELD_STEP.get(field.split(".")[0], "review")


def slot_id(field: str) -> str:
    """The id of the element that shows `field`'s error."""
    return "err-" + field.replace(".", "-").replace("_", "-")


def host_capabilities(host: Host, domain_type: str | None = None) -> HostCapabilities:
    """The host's capabilities for new VMs, cached for a few minutes per process (one libvirt call)."""
    from apps.hosts.services import connection_for
    from apps.virt.capabilities import get_capabilities

    key = (host.pk, host.uri, domain_type or "")
    cached = _caps_cache.get(key)
    if cached and time.monotonic() - cached[0] < _CAPS_TTL:
        return cached[1]
    caps = get_capabilities(connection_for(host), domain_type=domain_type or None)
    _caps_cache[key] = (time.monotonic(), caps)
    return caps


def _flag(post, name: str) -> bool:
    return post.get(name) in ("on", "true", "1", "yes")


def _size_mib(text: str) -> int | str:
    """A size typed in GiB (decimals allowed) in MiB; the text itself when it is not a number."""
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        return text
    mib = value * 1024
    return int(mib) if mib == mib.to_integral_value() else text


def params_from_post(post) -> dict[str, Any]:
    """The wizard's fields as the API's request body (VmCreateSerializer), so both validate the same."""
    data: dict[str, Any] = {}
    for name in (
        "host",
        "name",
        "title",
        "description",
        "source",
        "iso",
        "kernel",
        "initrd",
        "cmdline",
        "import_volume",
        "import_mode",
        "import_pool",
        "template",
        "domain_type",
        "machine",
        "firmware",
        "video",
        "cpu_mode",
        "cpu_model",
        "disk_bus",
        "vcpus",
        "max_vcpus",
        "sockets",
        "cores",
        "threads",
        "memory_mib",
        "max_memory_mib",
    ):
        value = post.get(name, "")
        if value != "":
            data[name] = value
    data["tags"] = [t.strip() for t in post.get("tags", "").split(",") if t.strip()]
    for name in ("secure_boot", "tpm", "vnc", "serial", "cdrom", "autostart", "start"):
        data[name] = _flag(post, name)
    disks, disk_rows = [], []
    for i in row_indices(post, "disk"):
        size = post.get(f"disk{i}_size", "").strip()
        pool = post.get(f"disk{i}_pool", "")
        if not size and not (data.get("source") == "template" and i == 0 and pool):
            continue
        disk: dict[str, Any] = {"pool": pool}
        if size:
            disk["size_mib"] = _size_mib(size)
        for key in ("format", "bus", "cache"):
            if post.get(f"disk{i}_{key}"):
                disk[key] = post.get(f"disk{i}_{key}")
        disks.append(disk)
        disk_rows.append(i)
    data["disks"] = disks
    nics, nic_rows = [], []
    for i in row_indices(post, "nic"):
        target = post.get(f"nic{i}_target", "")
        if not target:
            continue
        kind, _, source = target.partition(":")
        nic = {"kind": kind, "source": source, "model": post.get(f"nic{i}_model") or "virtio"}
        if post.get(f"nic{i}_mac", "").strip():
            nic["mac"] = post.get(f"nic{i}_mac").strip()
        nics.append(nic)
        nic_rows.append(i)
    data["nics"] = None if data.get("source") == "template" and not nics else nics
    cloud = {
        "hostname": post.get("ci_hostname", "").strip(),
        "user": post.get("ci_user", "").strip(),
        "password": post.get("ci_password", ""),
        "ssh_keys": [line.strip() for line in post.get("ci_ssh_keys", "").splitlines() if line.strip()],
        "user_data": post.get("ci_user_data", "").replace("\r\n", "\n"),
        "pool": post.get("ci_pool", ""),
    }
    data["cloud_init"] = {k: v for k, v in cloud.items() if v} or None
    return data, {"disks": disk_rows, "nics": nic_rows}


_ROW_KEY = re.compile(r"^(disk|nic)(\d{1,3})_[a-z]+$")


def row_indices(post, kind: str) -> list[int]:
    """The numbers of the `kind` rows ("disk", "nic") the page posted, in order (rows may have been
    added and removed, so they need not run 0, 1, 2...)."""
    found = set()
    for key in post:
        match = _ROW_KEY.match(key)
        if match and match.group(1) == kind:
            found.add(int(match.group(2)))
    return sorted(found)


def _rows(values, kind: str, at_least: int, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """The rows to render: those posted (with their values), and at least the first `at_least`."""
    numbers = sorted(set(range(at_least)) | set(row_indices(values, kind)))
    return [{"i": i, **{f: str(values.get(f"{kind}{i}_{f}") or "") for f in fields}} for i in numbers]


def _to_rows(errors: dict[str, str], rows: dict[str, list[int]]) -> dict[str, str]:
    """Errors about the n-th disk or NIC ("disks.1.size_mib") named by the page row it came from."""
    placed = {}
    for key, message in errors.items():
        kind, _, rest = key.partition(".")
        if kind in rows and rest == "general":  # about the list itself ("no more than 16")
            placed[kind] = message
            continue
        position, _, field = rest.partition(".")
        if kind in rows and position.isdigit() and int(position) < len(rows[kind]):
            key = f"{kind}.{rows[kind][int(position)]}" + (f".{field}" if field else "")
        placed[key] = message
    return placed


def _flatten(errors: Any, prefix: str = "") -> dict[str, str]:
    """DRF's nested serializer errors as {"disks.0.size_mib": "message"}."""
    flat: dict[str, str] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            name = key if key != "non_field_errors" else "general"
            flat.update(_flatten(value, f"{prefix}.{name}" if prefix else name))
    elif isinstance(errors, list):
        if errors and all(isinstance(e, str) for e in errors):
            flat[prefix] = " ".join(str(e) for e in errors)
        else:
            for i, item in enumerate(errors):
                if item:
                    flat.update(_flatten(item, f"{prefix}.{i}"))
    else:
        flat[prefix] = str(errors)
    return flat


def validate_wizard(request) -> tuple[dict[str, str], dict | None, Any]:
    """Validate the posted wizard: (errors by field, the job params, the plan) — params/plan None on errors."""
    data, rows = params_from_post(request.POST)
    serializer = VmCreateSerializer(data=data, context={"request": request})
    try:
        valid = serializer.is_valid()
    except drf_exceptions.PermissionDenied as exc:
        raise PermissionDenied(str(exc.detail)) from exc
    if not valid:
        return _to_rows(_flatten(serializer.errors), rows), None, None
    try:
        params = serializer.to_params()
        plan = plan_vm(request.user, serializer.validated_data["host"], params)
    except InvalidSpec as exc:
        return _to_rows(dict(exc.errors), rows), None, None
    except virt.VirtError as exc:
        return {"general": exc.message}, None, None
    return {}, params, plan


def _hosts(user):
    return restrict(Host.objects.filter(enabled=True), user, Action.ADD).order_by("name")


def wizard_context(request, host: Host | None, values: dict[str, Any]) -> dict[str, Any]:
    """Everything the wizard page offers for `host`: pools, volumes, templates, NIC targets, capabilities."""
    user = request.user
    context: dict[str, Any] = {
        "steps": STEPS,
        "hosts": _hosts(user),
        "host": host,
        "values": values,
        "sources": [(s, SOURCE_LABELS[s]) for s in SOURCES],
        "disk_rows": _rows(values, "disk", DISK_ROWS, ("pool", "size", "format", "bus", "cache")),
        "nic_rows": _rows(values, "nic", NIC_ROWS, ("target", "model", "mac")),
        "disk_formats": DISK_FORMATS,
        "cache_modes": CACHE_MODES,
        "caps": None,
        "caps_error": "",
    }
    if host is None:
        return context
    try:
        context["caps"] = host_capabilities(host, values.get("domain_type") or None)
    except virt.VirtError as exc:
        context["caps_error"] = exc.message
    volumes = list(restrict(StorageVolume.objects.filter(host=host, gone=False).select_related("pool"), user))
    context.update(
        pools=restrict(StoragePool.objects.filter(host=host, gone=False, active=True), user),
        isos=[v for v in volumes if v.is_iso],
        images=[v for v in volumes if not v.is_iso],
        volumes=volumes,
        templates=restrict(VirtualMachine.objects.filter(host=host, gone=False, is_template=True), user),
        nic_targets=_nic_targets(host),
    )
    return context


def _nic_targets(host: Host) -> list[tuple[str, str]]:
    """NIC choices as (value, label): "network:default", "bridge:br0", "direct:eth0"."""
    choices = nic_choices(host)
    targets = [
        (f"network:{n['name']}", f"Virtual network {n['name']}" + ("" if n["active"] else " (inactive)"))
        for n in choices["networks"]
    ]
    targets += [(f"bridge:{b['name']}", f"Host bridge {b['name']}") for b in choices["bridges"]]
    targets += [(f"direct:{m['name']}", f"macvtap on {m['name']}") for m in choices["macvtap"]]
    return targets


def _values(post) -> dict[str, Any]:
    """The posted values to render back into the inputs (never the cloud-init password)."""
    values = {key: post.get(key) for key in post if key not in ("csrfmiddlewaretoken", "ci_password")}
    for key in ("secure_boot", "tpm", "vnc", "serial", "cdrom", "autostart", "start"):
        values[key] = _flag(post, key)
    return values


DEFAULTS = {
    "vnc": True,
    "serial": True,
    "source": "iso",
    "vcpus": "1",
    "memory_mib": "1024",
    "disk0_size": "10",
}


@login_required
@require_http_methods(["GET", "POST"])
def create_view(request):
    """The wizard page (GET) and its final submission (POST): queue the job and open its page."""
    hosts = _hosts(request.user)
    if not hosts.exists():
        raise PermissionDenied("Your role may not create VMs on any host.")
    source = request.POST if request.method == "POST" else request.GET
    host = hosts.filter(pk=source.get("host")).first() if str(source.get("host", "")).isdigit() else None
    host = host or hosts.first()
    if request.method == "GET":
        values = {**DEFAULTS, **{k: v for k, v in request.GET.items()}, "host": str(host.pk)}
        return render(
            request, "vms/create.html", {**wizard_context(request, host, values), "active": "general"}
        )
    errors, params, plan = validate_wizard(request)
    if not errors:
        try:
            job, _plan = submit_create(request.user, host, params, request=request)
        except InvalidSpec as exc:
            errors = dict(exc.errors)
        except virt.VirtError as exc:
            errors = {"general": exc.message}
        else:
            return redirect("jobs:detail", job.pk)
    first = min((STEP_INDEX[step_of(k)] for k in errors), default=0)
    context = wizard_context(request, host, _values(request.POST))
    context.update(errors=_error_items(errors), active=STEPS[first][0])
    return render(request, "vms/create.html", context, status=400)


def _error_items(errors: dict[str, str]) -> list[dict[str, str]]:
    return [
        {"field": k, "slot": slot_id(k), "message": v, "step": step_of(k), "label": k.replace("_", " ")}
        for k, v in errors.items()
    ]


@login_required
@require_POST
def create_check_view(request):
    """htmx: validate the wizard up to `step`; show errors next to the inputs, move on if there are none."""
    if not _hosts(request.user).exists():
        raise PermissionDenied("Your role may not create VMs on any host.")
    step = request.POST.get("step") or request.GET.get("step", "general")
    if step not in STEP_INDEX:
        step = "general"
    current = STEP_INDEX[step]
    errors, params, plan = validate_wizard(request)
    relevant = {k: v for k, v in errors.items() if STEP_INDEX[step_of(k)] <= current}
    target = min(STEP_INDEX[step_of(k)] for k in relevant) if relevant else min(current + 1, len(STEPS) - 1)
    review = STEPS[target][0] == "review"
    xml = preview_xml(plan) if review and plan is not None else ""
    if review and plan is None and not relevant:  # an error of the review step itself (rare)
        relevant = errors
    response = render(
        request,
        "vms/_create_feedback.html",
        {"errors": _error_items(relevant), "xml": xml, "review": review, "target": STEPS[target][0]},
    )
    response["HX-Trigger-After-Swap"] = json.dumps({"vireo:wizard-step": {"step": STEPS[target][0]}})
    return response
