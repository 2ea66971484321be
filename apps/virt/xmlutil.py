"""Safe XML parsing with lxml: no entity expansion, no network access, no huge trees."""

from __future__ import annotations

from lxml import etree

from .errors import InvalidInput

SAFE_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_blank_text=True,
)


def parse_xml(text: str | bytes) -> etree._Element:
    """Parse an XML document with SAFE_PARSER; raise InvalidInput if it is not well-formed."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        return etree.fromstring(data, parser=SAFE_PARSER)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise InvalidInput(f"The XML is not well-formed: {exc}. Correct it and try again.") from exc


def text_of(element: etree._Element | None, path: str, default: str | None = None) -> str | None:
    """The stripped text of the first node at `path` under `element`, or `default`."""
    if element is None:
        return default
    found = element.find(path)
    if found is None or found.text is None:
        return default
    return found.text.strip()


def attr_of(element: etree._Element | None, path: str, name: str, default: str | None = None) -> str | None:
    """Attribute `name` of the first node at `path` ("." for `element` itself), or `default`."""
    if element is None:
        return default
    found = element if path == "." else element.find(path)
    if found is None:
        return default
    value = found.get(name)
    return default if value is None else value


def to_int(value: str | None, default: int | None = None) -> int | None:
    """Parse an integer (decimal or 0x hex) leniently; `default` when absent or malformed."""
    if value is None:
        return default
    try:
        return int(value, 0) if value.lower().startswith("0x") else int(value)
    except ValueError:
        return default


_UNIT_BYTES = {
    "b": 1,
    "bytes": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}


def memory_element_kib(found: etree._Element | None) -> int | None:
    """The size a memory element states (its text in its `unit`, KiB by default), in KiB."""
    if found is None or found.text is None:
        return None
    value = to_int(found.text.strip())
    if value is None:
        return None
    unit = (found.get("unit") or "KiB").lower()
    return value * _UNIT_BYTES.get(unit, 1024) // 1024
