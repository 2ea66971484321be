"""Validators for names a user types that later reach libvirt or a shell."""

import re

from django.core.exceptions import ValidationError

OBJECT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def validate_object_name(value: str) -> None:
    """Names of hosts and libvirt objects: letters, digits, '.', '_' and '-', 1 to 64, not starting with a sign."""
    if not OBJECT_NAME_RE.fullmatch(value or ""):
        raise ValidationError(
            "Use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(no spaces, slashes, quotes or other symbols).",
            code="invalid_name",
        )
