"""Content negotiation: which FHIR format a request body is in, and which the response must be.

JSON (`application/fhir+json`, `application/json`) and XML (`application/fhir+xml`, `application/xml`,
`text/xml`) in both directions; `_format` overrides Accept. Anything else: 415 for a body, 406 for a
response. XML goes through the StructureDefinition-driven converter in fhir/xml.py.
"""

from __future__ import annotations

from typing import Any, Literal

from sharedcare.errors import NotAcceptable, UnsupportedMediaType
from sharedcare.fhir import jsonio

Format = Literal["json", "xml"]
JSON_TYPE = "application/fhir+json; charset=utf-8"
XML_TYPE = "application/fhir+xml; charset=utf-8"
PATCH_TYPE = "application/json-patch+json"

_JSON = {"application/fhir+json", "application/json", "json", "application/json+fhir"}
_XML = {"application/fhir+xml", "application/xml", "text/xml", "xml", "application/xml+fhir"}
_ANY = {"*/*", "application/*", ""}


def _media(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def response_format(accept: str | None, format_param: str | None) -> Format:
    """The format to answer in; raises NotAcceptable (406) if we can produce nothing acceptable."""
    if format_param:
        m = _media(format_param.replace(" ", "+"))  # '+' in a query string arrives as a space
        if m in _JSON:
            return "json"
        if m in _XML:
            return "xml"
        raise NotAcceptable("_format must be json or xml")
    if not accept:
        return "json"
    ranked = []
    for i, part in enumerate(accept.split(",")):
        media = _media(part)
        q = 1.0
        for param in part.split(";")[1:]:
            k, _, v = param.strip().partition("=")
            if k == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        ranked.append((-q, i, media))
    for negq, _, media in sorted(ranked):
        if negq == 0:
            continue
        if media in _JSON or media in _ANY or media == "application/fhir+ndjson":
            return "json"
        if media in _XML:
            return "xml"
    raise NotAcceptable("this server answers in application/fhir+json or application/fhir+xml")


def body_format(content_type: str | None) -> Format:
    m = _media(content_type or "")
    if m in _JSON:
        return "json"
    if m in _XML:
        return "xml"
    raise UnsupportedMediaType("send application/fhir+json or application/fhir+xml")


def parse_body(data: bytes, content_type: str | None) -> Any:
    """Parse a resource body in the format its Content-Type names."""
    if body_format(content_type) == "xml":
        from sharedcare.fhir.xml import xml_to_json

        return xml_to_json(data)
    return jsonio.loads(data)


def render(body: bytes | dict[str, Any], fmt: Format) -> bytes:
    """Serialise a resource for the response. Stored JSON bytes pass through untouched."""
    if fmt == "json":
        return body if isinstance(body, bytes) else jsonio.dumps(body)
    from sharedcare.fhir.xml import json_to_xml

    xml: bytes = json_to_xml(jsonio.loads(body) if isinstance(body, bytes) else body)
    return xml


def media_type(fmt: Format) -> str:
    return JSON_TYPE if fmt == "json" else XML_TYPE
