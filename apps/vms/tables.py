"""The VM list's rows, rendered in Python (every value escaped).

A page of 100 rows through the template engine costs tens of milliseconds, and format_html (which
escapes through conditional_escape per argument) several; `escape` on each value and one str.format per
row costs about one, and the list must stay fast whatever the number of VMs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from .choices import STATE_BADGES, VmState

# The columns a row shows: read with QuerySet.values(), so the big JSON fields (disks, NICs, graphics)
# stay in the database and no model instance is built per row.
ROW_FIELDS = ("pk", "name", "title", "state", "gone", "vcpus", "memory_kib", "addresses", "host__name")
STATE_LABELS = dict(VmState.choices)

ROW = (
    '<tr data-live="vm-{pk}">'
    '<td><input class="form-check-input" type="checkbox" name="selected" value="{pk}" aria-label="Select {name}"></td>'
    '<td><a href="{url}">{name}</a>{title}</td>'
    '<td><span class="badge text-bg-{badge}" data-field="state_label">{state}</span></td>'
    "<td>{host}</td>"
    '<td class="text-end" data-field="vcpus">{vcpus}</td>'
    '<td class="text-end" data-field="memory_mib">{memory} MiB</td>'
    '<td class="small" data-field="addresses">{addresses}</td>'
    '<td class="vm-use" data-stats-vm="{pk}" data-points="{points}"></td>'
    "</tr>"
)
TITLE = ' <span class="small text-body-secondary">{}</span>'


def vm_rows(vms: Iterable[dict], history: dict[int, list] | None = None) -> list[SafeString]:
    """One table row per VM (dicts of ROW_FIELDS), with the data-live and data-field marks live.js updates.

    The badge and label follow VirtualMachine.state_badge and state_label. `history` (VM pk -> its CPU and
    memory points, from metrics.history) seeds each row's sparklines, which live statistics extend.
    """
    history = history or {}
    prefix = escape(reverse("vms:list"))
    rows = []
    for vm in vms:
        pk = int(vm["pk"])
        gone = vm["gone"]
        state = vm["state"]
        rows.append(
            mark_safe(  # noqa: S308 - every value below is escaped or an int
                ROW.format(
                    pk=pk,
                    url=f"{prefix}{pk}/",
                    name=escape(vm["name"]),
                    title=TITLE.format(escape(vm["title"])) if vm["title"] else "",
                    badge="dark" if gone else STATE_BADGES.get(state, "light"),
                    state="Gone" if gone else escape(STATE_LABELS.get(state, state)),
                    host=escape(vm["host__name"]),
                    vcpus=int(vm["vcpus"]),
                    memory=int(vm["memory_kib"]) // 1024,
                    addresses=escape(", ".join(vm["addresses"] or ())),
                    points=escape(json.dumps(history.get(pk, []), separators=(",", ":"))),
                )
            )
        )
    return rows
