"""VM states as libvirt reports them, and the first actions."""

from django.db import models


class VmState(models.TextChoices):
    """libvirt's domain states."""

    RUNNING = "running", "Running"
    BLOCKED = "blocked", "Blocked"
    PAUSED = "paused", "Paused"
    SHUTDOWN = "shutdown", "Shutting down"
    SHUTOFF = "shutoff", "Off"
    CRASHED = "crashed", "Crashed"
    PMSUSPENDED = "pmsuspended", "Suspended (guest)"
    NOSTATE = "nostate", "No state"


class VmAction(models.TextChoices):
    """The actions a user can take on a VM from the pages and the API."""

    START = "start", "Start"
    SHUTDOWN = "shutdown", "Shut down"
    REBOOT = "reboot", "Reboot"
    FORCE_OFF = "force_off", "Force off"
    PAUSE = "pause", "Pause"
    RESUME = "resume", "Resume"
    RESET = "reset", "Reset"
    SAVE = "save", "Save (suspend to disk)"
    RESTORE = "restore", "Restore"


STATE_BADGES = {
    VmState.RUNNING: "success",
    VmState.BLOCKED: "info",
    VmState.PAUSED: "warning",
    VmState.SHUTDOWN: "info",
    VmState.SHUTOFF: "secondary",
    VmState.CRASHED: "danger",
    VmState.PMSUSPENDED: "warning",
    VmState.NOSTATE: "light",
}
