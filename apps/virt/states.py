"""VM states, the reasons behind them, and which power actions apply in which state."""

from __future__ import annotations

import libvirt

from .errors import InvalidInput

RUNNING = "running"
BLOCKED = "blocked"
PAUSED = "paused"
SHUTDOWN = "shutdown"
SHUTOFF = "shutoff"
CRASHED = "crashed"
PMSUSPENDED = "pmsuspended"
NOSTATE = "nostate"

STATE_NAMES: dict[int, str] = {
    libvirt.VIR_DOMAIN_NOSTATE: NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: BLOCKED,
    libvirt.VIR_DOMAIN_PAUSED: PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PMSUSPENDED,
}

_REASON_WORDS: dict[str, list[str]] = {
    RUNNING: [
        "unknown",
        "booted",
        "migrated",
        "restored",
        "from snapshot",
        "unpaused",
        "migration canceled",
        "save canceled",
        "woken up",
        "crashed",
        "post-copy",
        "post-copy failed",
    ],
    PAUSED: [
        "unknown",
        "user",
        "migration",
        "saving",
        "dumping",
        "I/O error",
        "watchdog",
        "from snapshot",
        "shutting down",
        "snapshot",
        "crashed",
        "starting up",
        "post-copy",
        "post-copy failed",
        "API error",
    ],
    SHUTDOWN: ["unknown", "user"],
    SHUTOFF: [
        "unknown",
        "shutdown",
        "destroyed",
        "crashed",
        "migrated",
        "saved",
        "failed",
        "from snapshot",
        "daemon",
    ],
    CRASHED: ["unknown", "panicked"],
    PMSUSPENDED: ["unknown"],
    BLOCKED: ["unknown"],
    NOSTATE: ["unknown"],
}
STATE_REASONS: dict[tuple[str, int], str] = {
    (state, number): word for state, words in _REASON_WORDS.items() for number, word in enumerate(words)
}


def state_name(code: int) -> str:
    """The state constant for libvirt's numeric domain state."""
    return STATE_NAMES.get(code, NOSTATE)


def reason_words(state: str, reason: int) -> str:
    """Short human words for why a VM is in `state` ("booted", "destroyed", "user"...)."""
    return STATE_REASONS.get((state, reason), "unknown")


_ACTION_STATES: dict[str, frozenset[str]] = {
    "start": frozenset({SHUTOFF}),
    "shutdown": frozenset({RUNNING, BLOCKED}),
    "reboot": frozenset({RUNNING, BLOCKED}),
    "force_off": frozenset({RUNNING, BLOCKED, PAUSED, SHUTDOWN, CRASHED, PMSUSPENDED}),
    "pause": frozenset({RUNNING, BLOCKED}),
    "resume": frozenset({PAUSED}),
    "reset": frozenset({RUNNING, BLOCKED, PAUSED}),
    "save": frozenset({RUNNING, BLOCKED, PAUSED}),
    "restore": frozenset({SHUTOFF}),
}
_WHY_NOT_BY_STATE = {
    RUNNING: "is running",
    BLOCKED: "is running",
    PAUSED: "is paused; resume it first",
    SHUTDOWN: "is shutting down; wait until it has stopped",
    SHUTOFF: "is not running; start it first",
    CRASHED: "has crashed; force it off first",
    PMSUSPENDED: "is suspended by its guest; wake it from the guest or force it off",
    NOSTATE: "is in an unknown state; refresh and try again",
}
_WHY_NOT: dict[tuple[str, str], str] = {
    ("start", RUNNING): "is already running",
    ("start", BLOCKED): "is already running",
    ("start", PAUSED): "is paused; resume it instead",
    ("shutdown", SHUTDOWN): "is already shutting down",
    ("shutdown", PAUSED): "is paused; resume it first, or force it off",
    ("force_off", SHUTOFF): "is already off",
    ("pause", PAUSED): "is already paused",
    ("resume", RUNNING): "is not paused",
    ("resume", BLOCKED): "is not paused",
    ("save", SHUTOFF): "is not running; there is nothing to save",
    ("restore", RUNNING): "is already running",
    ("restore", BLOCKED): "is already running",
    ("restore", PAUSED): "is paused; resume it instead",
}


def refusal_for(action: str, state: str, subject: str) -> str | None:
    """Like action_refusal, with the sentence about `subject` ("VM web1") instead of "The VM"."""
    if action not in _ACTION_STATES:
        raise InvalidInput(f"Unknown VM action {action!r}.")
    if state in _ACTION_STATES[action]:
        return None
    why = _WHY_NOT.get((action, state)) or _WHY_NOT_BY_STATE.get(state, "is in an unexpected state")
    return f"{subject} {why}."


def action_refusal(action: str, state: str) -> str | None:
    """None if `action` applies to a VM in `state`; otherwise why not (to disable a button with a reason)."""
    return refusal_for(action, state, "The VM")
