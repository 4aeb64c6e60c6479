"""XML documents as the ``query`` and ``rest-xml`` protocols shape them."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from botocore.model import ListShape, MapShape, Shape, StructureShape

from nubes.aws.errors import AwsError
from nubes.aws.protocol.values import Problems, check_required, format_timestamp, scalar_from_text


def member_xml_name(member: Shape, name: str) -> str:
    """The element name of a structure member (flattened lists use their item name)."""
    if member.type_name == "list" and member.serialization.get("flattened"):
        assert isinstance(member, ListShape)
        item_name = member.member.serialization.get("name")
        if item_name:
            return str(item_name)
    return str(member.serialization.get("name", name))


# -- writing --------------------------------------------------------------------


def _text(shape: Shape, value: Any) -> str:
    kind = shape.type_name
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "blob":
        raw = value.encode() if isinstance(value, str) else bytes(value)
        return base64.b64encode(raw).decode()
    if kind == "timestamp":
        return str(format_timestamp(value, shape.serialization.get("timestampFormat", "iso8601")))
    if kind in ("float", "double"):
        return repr(float(value)) if not float(value).is_integer() else str(float(value))
    return escape(str(value))


def _namespace_attr(shape: Shape) -> str:
    ns = shape.serialization.get("xmlNamespace")
    if not ns:
        return ""
    if isinstance(ns, str):
        return f" xmlns={quoteattr(ns)}"
    prefix = ns.get("prefix")
    attr = f"xmlns:{prefix}" if prefix else "xmlns"
    return f" {attr}={quoteattr(ns['uri'])}"


def write_element(out: list[str], shape: Shape, value: Any, name: str, xmlns: str = "") -> None:
    """Append ``<name>value</name>`` for any shape."""
    if value is None:
        return
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        attrs = xmlns or _namespace_attr(shape)
        inner: list[str] = []
        for key, item in value.items():
            member = shape.members.get(key)
            if member is None or item is None:
                continue
            if member.serialization.get("xmlAttribute"):
                attrs += f" {member.serialization.get('name', key)}={quoteattr(str(item))}"
                continue
            _write_member(inner, member, item, key)
        out.append(f"<{name}{attrs}>")
        out.extend(inner)
        out.append(f"</{name}>")
    elif kind == "list":
        assert isinstance(shape, ListShape)
        item_name = shape.member.serialization.get("name", "member")
        out.append(f"<{name}{xmlns}>")
        for item in value:
            write_element(out, shape.member, item, item_name)
        out.append(f"</{name}>")
    elif kind == "map":
        assert isinstance(shape, MapShape)
        out.append(f"<{name}{xmlns}>")
        _write_map_entries(out, shape, value, "entry")
        out.append(f"</{name}>")
    else:
        out.append(f"<{name}{xmlns}>{_text(shape, value)}</{name}>")


def _write_member(out: list[str], member: Shape, value: Any, key: str) -> None:
    name = member_xml_name(member, key)
    if member.type_name == "list" and member.serialization.get("flattened"):
        assert isinstance(member, ListShape)
        for item in value:
            write_element(out, member.member, item, name)
    elif member.type_name == "map" and member.serialization.get("flattened"):
        assert isinstance(member, MapShape)
        _write_map_entries(out, member, value, name)
    else:
        write_element(out, member, value, name)


def _write_map_entries(out: list[str], shape: MapShape, value: dict[str, Any], entry: str) -> None:
    key_name = shape.key.serialization.get("name", "key")
    value_name = shape.value.serialization.get("name", "value")
    for k, v in value.items():
        out.append(f"<{entry}>")
        write_element(out, shape.key, k, key_name)
        write_element(out, shape.value, v, value_name)
        out.append(f"</{entry}>")


def write_members(out: list[str], shape: StructureShape, value: dict[str, Any]) -> None:
    """The members of a structure without a wrapping element."""
    for key, item in value.items():
        member = shape.members.get(key)
        if member is None or item is None:
            continue
        _write_member(out, member, item, key)


# -- reading --------------------------------------------------------------------


def parse_document(body: bytes) -> ET.Element:
    """Parse an XML body; malformed XML is AWS's MalformedXML error."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise AwsError(
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our published schema",
            400,
        ) from None
    for element in root.iter():
        if "}" in element.tag:
            element.tag = element.tag.split("}", 1)[1]
    return root


def read_element(shape: Shape, element: ET.Element, path: str, problems: Problems) -> Any:
    """Convert an element to a provider value of ``shape``."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        out: dict[str, Any] = {}
        children: dict[str, list[ET.Element]] = {}
        for child in element:
            children.setdefault(child.tag, []).append(child)
        for key, member in shape.members.items():
            if member.serialization.get("xmlAttribute"):
                attr = member.serialization.get("name", key)
                for attr_name, attr_value in element.attrib.items():
                    if attr_name == attr or attr_name.endswith("}" + attr.split(":")[-1]):
                        out[key] = attr_value
                continue
            found = children.get(member_xml_name(member, key))
            if not found:
                continue
            mpath = f"{path}.{key[:1].lower()}{key[1:]}" if path else key[:1].lower() + key[1:]
            if member.type_name == "list" and member.serialization.get("flattened"):
                assert isinstance(member, ListShape)
                out[key] = [read_element(member.member, e, mpath, problems) for e in found]
            elif member.type_name == "map" and member.serialization.get("flattened"):
                assert isinstance(member, MapShape)
                out[key] = _read_map_entries(member, found, mpath, problems)
            else:
                out[key] = read_element(member, found[0], mpath, problems)
        check_required(shape, out, path, problems)
        return out
    if kind == "list":
        assert isinstance(shape, ListShape)
        item_name = shape.member.serialization.get("name", "member")
        return [read_element(shape.member, e, path, problems) for e in element if e.tag == item_name]
    if kind == "map":
        assert isinstance(shape, MapShape)
        return _read_map_entries(shape, [e for e in element if e.tag == "entry"], path, problems)
    return scalar_from_text(shape, element.text or "", path, problems, "iso8601")


def _read_map_entries(
    shape: MapShape, entries: list[ET.Element], path: str, problems: Problems
) -> dict[str, Any]:
    key_name = shape.key.serialization.get("name", "key")
    value_name = shape.value.serialization.get("name", "value")
    out: dict[str, Any] = {}
    for entry in entries:
        k = entry.find(key_name)
        v = entry.find(value_name)
        if k is None:
            continue
        out[k.text or ""] = None if v is None else read_element(shape.value, v, path, problems)
    return out
