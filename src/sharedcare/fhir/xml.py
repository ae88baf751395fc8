"""FHIR XML <-> FHIR JSON, driven by the R4 StructureDefinitions (R4 xml.html and json.html).

XML element order follows the StructureDefinition; primitives carry `value` attributes, and their `id`
and extensions map to JSON's `_name` objects (arrays aligned with nulls); `id` on complex elements and
`Extension.url` are attributes; contained and bundled resources are wrapped in an element named by
their type; the narrative `div` is XHTML kept as a string in JSON. Decimals keep their literal.

Security (IV2; CVE-2024-45294, -51132, -52007 in other servers): DOCTYPEs, entity declarations and
processing instructions are refused before parsing, and the parser resolves no entities, loads no DTD
and touches no network or file.
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree

from sharedcare.errors import BadRequest
from sharedcare.fhir.definitions import resource_types
from sharedcare.fhir.jsonio import FhirDecimal
from sharedcare.fhir.model import Element, is_primitive, keymap, layouts

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
F = f"{{{FHIR_NS}}}"
INTEGER_TYPES = {"integer", "positiveInt", "unsignedInt"}
MAX_XML_BYTES = 64 * 1024 * 1024
_FORBIDDEN = re.compile(rb"<!DOCTYPE|<!ENTITY|<\?xml-stylesheet|xmlns:xi\s*=|XInclude", re.IGNORECASE)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_comments=True, remove_pis=True)


# -- JSON -> XML ------------------------------------------------------------------------------------

def json_to_xml(resource: dict[str, Any]) -> bytes:
    """Serialise a FHIR JSON resource as FHIR XML (UTF-8, with an XML declaration)."""
    root = _resource_element(resource, "")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _resource_element(resource: Any, path: str) -> etree._Element:
    if not isinstance(resource, dict) or resource.get("resourceType") not in resource_types():
        raise BadRequest(f"{path or 'the body'} is not a FHIR resource")
    rtype = resource["resourceType"]
    # lxml takes None as the key of the default namespace; its stubs only know str keys.
    elem = etree.Element(F + rtype, nsmap={None: FHIR_NS})  # type: ignore[dict-item]
    _write_children(elem, resource, rtype, path or rtype, is_resource=True)
    return elem


def _text(value: Any, vtype: str, path: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, FhirDecimal):
        return value.literal
    if isinstance(value, (int, str)):
        return str(value)
    raise BadRequest(f"{path} is not a valid {vtype}")


def _write_children(elem: etree._Element, node: dict[str, Any], ctx: str, path: str, *,
                    is_resource: bool = False) -> None:
    keys = keymap(ctx)
    for key in node:
        if key == "resourceType" and is_resource:
            continue
        if (key[1:] if key.startswith("_") else key) not in keys:
            raise BadRequest(f"{path}.{key} is not an element of {ctx}")
    for el in layouts().get(ctx, {}).values():
        names = [el.name] if not el.choice else [el.name + t[0].upper() + t[1:] for t in el.types]
        for name in names:
            if name in node or "_" + name in node:
                _write_element(elem, node, name, keys[name][1], el, ctx, path, is_resource)


def _write_element(parent: etree._Element, node: dict[str, Any], name: str, vtype: str, el: Element, ctx: str,
                   path: str, is_resource: bool) -> None:
    value, ext = node.get(name), node.get("_" + name)
    values = value if isinstance(value, list) else [value] if value is not None else []
    exts = ext if isinstance(ext, list) else [ext] if ext is not None else []
    count = max(len(values), len(exts))
    values += [None] * (count - len(values))
    exts += [None] * (count - len(exts))
    for i, (v, x) in enumerate(zip(values, exts, strict=True)):
        where = f"{path}.{name}[{i}]" if el.many else f"{path}.{name}"
        if name == "id" and not is_resource and is_primitive(vtype) and v is not None:
            parent.set("id", _text(v, vtype, where))
            continue
        if name == "url" and ctx == "Extension" and v is not None:
            parent.set("url", _text(v, vtype, where))
            continue
        if vtype == "xhtml":
            parent.append(_xhtml(v, where))
            continue
        child = etree.SubElement(parent, F + name)
        if vtype in ("Resource", "DomainResource"):
            child.append(_resource_element(v, where))
        elif is_primitive(vtype):
            if x is not None:
                if not isinstance(x, dict):
                    raise BadRequest(f"{path}._{name} must be an object")
                _write_children(child, x, "Element", where)
            if v is not None:
                child.set("value", _text(v, vtype, where))
        else:
            if not isinstance(v, dict):
                raise BadRequest(f"{where} must be an object")
            _write_children(child, v, el.context if not el.choice and el.context else vtype, where)


def _xhtml(value: Any, path: str) -> etree._Element:
    if not isinstance(value, str):
        raise BadRequest(f"{path} must be an XHTML string")
    data = value.encode()
    if _FORBIDDEN.search(data):
        raise BadRequest(f"{path} contains a DOCTYPE or entity declaration")
    try:
        div = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError:
        raise BadRequest(f"{path} is not well-formed XHTML") from None
    if div.tag != f"{{{XHTML_NS}}}div":
        raise BadRequest(f"{path} must be a div in the XHTML namespace")
    return div


# -- XML -> JSON ------------------------------------------------------------------------------------

def xml_to_json(data: bytes) -> dict[str, Any]:
    """Parse FHIR XML into FHIR JSON (as `jsonio.loads` would give it). Refuses unsafe or malformed XML."""
    if len(data) > MAX_XML_BYTES:
        raise BadRequest("the XML document is too large")
    if _FORBIDDEN.search(data):
        raise BadRequest("XML with a DOCTYPE, entity declarations or XInclude is not accepted")
    try:
        root = etree.fromstring(data, _parser())
    except (etree.XMLSyntaxError, ValueError):
        raise BadRequest("the body is not well-formed XML") from None
    tree = root.getroottree()
    docinfo = tree.docinfo
    if getattr(docinfo, "doctype", "") or getattr(docinfo, "internalDTD", None) is not None:
        raise BadRequest("XML with a DOCTYPE is not accepted")
    return _read_resource(root, "")


def _local(elem: etree._Element, path: str) -> str:
    tag = elem.tag
    if not isinstance(tag, str) or not tag.startswith(F):
        raise BadRequest(f"{path or 'the document'} has an element outside the FHIR namespace")
    return tag[len(F):]


def _read_resource(elem: etree._Element, path: str) -> dict[str, Any]:
    rtype = _local(elem, path)
    if rtype not in resource_types():
        raise BadRequest(f"{path or 'the root element'} is not a FHIR resource type")
    out: dict[str, Any] = {"resourceType": rtype}
    _read_children(elem, rtype, path or rtype, out, is_resource=True)
    return out


def _read_children(elem: etree._Element, ctx: str, path: str, out: dict[str, Any], *,
                   is_resource: bool = False) -> None:
    keys = keymap(ctx)
    for attr, value in elem.attrib.items():
        if attr == "id" and not is_resource and "id" in keys:
            out["id"] = value
        elif attr == "url" and ctx == "Extension":
            out["url"] = value
        elif attr != "value":
            raise BadRequest(f"{path} has an unexpected attribute")
    values: dict[str, list[Any]] = {}
    exts: dict[str, list[Any]] = {}
    for child in elem:  # the parser drops comments and processing instructions
        if child.tag == f"{{{XHTML_NS}}}div" and "div" in keys:
            out["div"] = etree.tostring(child, encoding="unicode", with_tail=False)
            continue
        name = _local(child, path)
        found = keys.get(name)
        if found is None:
            raise BadRequest(f"{path}.{name} is not an element of {ctx}")
        el, vtype = found
        where = f"{path}.{name}"
        if vtype in ("Resource", "DomainResource"):
            inner = [c for c in child if isinstance(c.tag, str)]
            if len(inner) != 1:
                raise BadRequest(f"{where} must hold exactly one resource")
            values.setdefault(name, []).append(_read_resource(inner[0], where))
            exts.setdefault(name, []).append(None)
        elif is_primitive(vtype):
            raw = child.get("value")
            ext: dict[str, Any] = {}
            _read_children(child, "Element", where, ext)
            values.setdefault(name, []).append(None if raw is None else _primitive(raw, vtype, where))
            exts.setdefault(name, []).append(ext or None)
            if raw is None and not ext:
                raise BadRequest(f"{where} has neither a value nor extensions")
        else:
            obj: dict[str, Any] = {}
            _read_children(child, el.context if not el.choice and el.context else vtype, where, obj)
            values.setdefault(name, []).append(obj)
            exts.setdefault(name, []).append(None)
    for name, vals in values.items():
        el = keys[name][0]
        ex = exts[name]
        if not el.many and len(vals) > 1:
            raise BadRequest(f"{path}.{name} may occur only once")
        if any(v is not None for v in vals):
            out[name] = vals if el.many else vals[0]
        if any(x is not None for x in ex):
            out["_" + name] = ex if el.many else ex[0]


def _primitive(raw: str, vtype: str, path: str) -> Any:
    if vtype == "boolean":
        if raw not in ("true", "false"):
            raise BadRequest(f"{path} is not a boolean")
        return raw == "true"
    if vtype in INTEGER_TYPES:
        if not re.fullmatch(r"-?\d{1,10}", raw):
            raise BadRequest(f"{path} is not an integer")
        return int(raw)
    if vtype == "decimal":
        if not re.fullmatch(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?", raw):
            raise BadRequest(f"{path} is not a decimal")
        # The same Python value jsonio.loads gives for this literal in JSON (an int when it has no
        # fraction or exponent), so XML and JSON of one resource compare equal.
        return int(raw) if re.fullmatch(r"-?\d{1,18}", raw) else FhirDecimal(raw)
    return raw
