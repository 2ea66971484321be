"""Pages that change a VM: settings, disks, NICs, CD media, boot order, template flag, and the domain XML
(read by anyone who sees the VM; the editor for those who may change it)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps import virt
from apps.core.choices import Action
from apps.core.permissions import can, get_restricted, restrict
from apps.networks.services import nic_choices
from apps.storage.models import StoragePool, StorageVolume
from apps.virt.builder import InvalidSpec
from apps.virt.capabilities import CACHE_MODES, NIC_MODELS

from . import changes
from .models import VirtualMachine

PENDING_LABELS = {
    "vcpus": "vCPUs",
    "max_vcpus": "maximum vCPUs",
    "memory_mib": "memory",
    "max_memory_mib": "maximum memory",
    "boot_order": "boot order",
    "xml": "definition (XML)",
}


def pending_list(vm: VirtualMachine) -> list[str]:
    """The pending changes of a VM as words ("memory: 2048", "disk vdb: attach")."""
    words = []
    for key, value in (vm.pending_changes or {}).items():
        if ":" in key:
            kind, _, name = key.partition(":")
            words.append(f"{kind} {name}: {value}")
        elif value is True:
            words.append(PENDING_LABELS.get(key, key))
        else:
            shown = ", ".join(value) if isinstance(value, list) else value
            words.append(f"{PENDING_LABELS.get(key, key)}: {shown}")
    return words


def _vm(request, pk: int, action: str = Action.CHANGE) -> VirtualMachine:
    return get_restricted(VirtualMachine.objects.select_related("host", "team"), request.user, action, pk=pk)


@login_required
def vm_edit_view(request, pk: int):
    """The VM's change page (team admins)."""
    vm = _vm(request, pk)
    user = request.user
    volumes = list(
        restrict(StorageVolume.objects.filter(host=vm.host, gone=False).select_related("pool"), user)
    )
    nics = nic_choices(vm.host)
    targets = [(f"network:{n['name']}", f"Virtual network {n['name']}") for n in nics["networks"]]
    targets += [(f"bridge:{b['name']}", f"Host bridge {b['name']}") for b in nics["bridges"]]
    targets += [(f"direct:{m['name']}", f"macvtap on {m['name']}") for m in nics["macvtap"]]
    context = {
        "vm": vm,
        "pending": pending_list(vm),
        "pools": restrict(StoragePool.objects.filter(host=vm.host, gone=False, active=True), user),
        "isos": [v for v in volumes if v.is_iso],
        "images": [v for v in volumes if not v.is_iso],
        "nic_targets": targets,
        "nic_models": NIC_MODELS,
        "cache_modes": CACHE_MODES,
        "buses": ("virtio", "sata", "scsi"),
        "boot_devices": [d["target"] for d in vm.disks] + [n["mac"] for n in vm.nics if n.get("mac")],
        "tags": ", ".join(vm.tags.values_list("name", flat=True)),
    }
    return render(request, "vms/edit.html", context)


def _int_or_none(value: str):
    value = (value or "").strip()
    return value if value else None


def _changed(value: str, current: int):
    """The typed value unless it equals the current one (then None: left alone)."""
    value = _int_or_none(value)
    return None if value is not None and value == str(current) else value


@login_required
@require_POST
def vm_change_view(request, pk: int, what: str):
    """Apply one change from the edit page, then show what happened (applied now, or pending)."""
    vm = _vm(request, pk)
    user, post = request.user, request.POST
    try:
        if what == "settings":
            result = changes.update_vm(
                user,
                vm,
                {
                    "title": post.get("title", ""),
                    "description": post.get("description", "").replace("\r\n", "\n"),
                    "tags": [t for t in post.get("tags", "").split(",")],
                    "autostart": post.get("autostart") == "on",
                    # Only what was changed: an unchanged number is not applied again.
                    "vcpus": _changed(post.get("vcpus"), vm.vcpus),
                    "max_vcpus": _int_or_none(post.get("max_vcpus")),
                    "memory_mib": _changed(post.get("memory_mib"), vm.memory_mib),
                    "max_memory_mib": _int_or_none(post.get("max_memory_mib")),
                },
                request=request,
            )
        elif what == "attach-disk":
            result = changes.attach_disk(
                user,
                vm,
                pool=post.get("pool"),
                size_mib=post.get("size_mib"),
                fmt=post.get("format") or "qcow2",
                volume=post.get("volume") or None,
                bus=post.get("bus") or "virtio",
                cache=post.get("cache") or "default",
                device="cdrom" if post.get("device") == "cdrom" else "disk",
                request=request,
            )
        elif what == "detach-disk":
            result = changes.detach_disk(user, vm, post.get("target", ""), request=request)
        elif what == "resize":
            result = changes.resize_disk(
                user, vm, post.get("target", ""), post.get("size_mib"), request=request
            )
        elif what == "media":
            result = changes.change_media(
                user, vm, post.get("target", ""), post.get("volume") or None, request=request
            )
        elif what == "attach-nic":
            kind, _, source = post.get("target", "").partition(":")
            result = changes.attach_nic(
                user,
                vm,
                kind=kind,
                source=source,
                model=post.get("model") or "virtio",
                mac=post.get("mac") or None,
                request=request,
            )
        elif what == "detach-nic":
            result = changes.detach_nic(user, vm, post.get("mac", ""), request=request)
        elif what == "boot-order":
            order = [d.strip() for d in post.get("order", "").split(",") if d.strip()]
            result = changes.set_boot_order(user, vm, order, request=request)
        elif what == "template":
            changes.set_template(user, vm, post.get("is_template") == "on", request=request)
            messages.success(
                request, f"{vm.name} {'is now a template' if vm.is_template else 'is no longer a template'}."
            )
            return redirect("vms:edit", vm.pk)
        else:
            raise Http404("No such change.")
    except InvalidSpec as exc:
        for field, message in exc.errors.items():
            messages.error(request, f"{field.replace('_', ' ')}: {message}")
        return redirect("vms:edit", vm.pk)
    except virt.VirtError as exc:
        messages.error(request, exc.message)
        return redirect("vms:edit", vm.pk)
    for line in result.messages:
        (messages.warning if "pending" in line else messages.success)(request, line)
    return redirect("vms:edit", vm.pk)


@login_required
@require_http_methods(["GET", "POST"])
def vm_xml_view(request, pk: int):
    """The domain XML: read-only for viewers, an editor (validated by libvirt) for those who may change it."""
    vm = _vm(request, pk, Action.VIEW)
    may_change = can(request.user, vm, Action.CHANGE)
    error = ""
    text = ""
    if request.method == "POST":
        if not may_change:
            vm = _vm(request, pk)  # raises 403
        text = request.POST.get("xml", "").replace("\r\n", "\n")
        try:
            result = changes.update_xml(request.user, vm, text, request=request)
        except virt.VirtError as exc:
            error = exc.message
        else:
            for line in result.messages:
                (messages.warning if "pending" in line else messages.success)(request, line)
            return redirect("vms:xml", vm.pk)
    if not text:
        try:
            text = changes.vm_xml(vm)
        except virt.VirtError as exc:
            error = error or exc.message
    context = {
        "vm": vm,
        "xml": text,
        "error": error,
        "may_change": may_change,
        "admin": request.user.is_superuser,
        "pending": pending_list(vm),
    }
    return render(
        request, "vms/edit_xml.html", context, status=400 if error and request.method == "POST" else 200
    )
