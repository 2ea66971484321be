"""Template filters used across Vireo's pages."""

from django import template
from django.template.defaultfilters import filesizeformat

register = template.Library()


@register.filter
def filesizeformat_kib(value) -> str:
    """A size given in KiB, as a person reads it (e.g. '2.0 GB')."""
    try:
        return filesizeformat(int(value) * 1024)
    except (TypeError, ValueError):
        return "—"
