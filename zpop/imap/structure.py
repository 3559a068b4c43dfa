"""The MIME structure of a stored message, for IMAP FETCH.

A message is parsed once, at delivery, into a tree of :class:`Part` that
knows every part's byte offsets in the stored message and everything
BODYSTRUCTURE needs.  The tree is kept in the store as JSON, so FETCH never
parses a message again: BODY and BODYSTRUCTURE come from the tree alone,
and ``BODY[section]<partial>`` becomes byte ranges that the server streams
from the store in chunks, reading nothing else::

    tree = parse(raw)                       # at delivery
    stored = json.dumps(tree.to_json())

    tree = Part.from_json(json.loads(stored))          # at FETCH
    encode(bodystructure(tree, extended=True))         # BODYSTRUCTURE
    section = Section((2, 1), HEADER_FIELDS, ("From", "Subject"))
    ranges = section_range(tree, section)
    if section.filtered:                    # HEADER.FIELDS (.NOT): small
        data = header_fields(read(ranges), section.fields, section.exclude)
        data = data[offset : offset + length]
    else:                                   # whole parts, TEXT, HEADER, MIME
        ranges = partial(ranges, offset, length)
        literal_size = total(ranges)        # then stream each range

Offsets are into the message exactly as stored and sizes are octet counts
of those bytes (the server sends stored bytes as they are, so BODY[1] is as
long as BODYSTRUCTURE says); line counts count LF.

Parsing follows RFC 2045/2046 and, where they leave room, Dovecot:

* A header ends at the first empty line; a part without one is all
  header.  Content-* fields count only in MIME entities: parts of a
  multipart, or messages with MIME-Version or Content-Type.  The first of
  duplicate fields wins.
* Boundary lines are matched exactly (RFC 2046 §5.1.1): ``--boundary``,
  optional ``--``, optional spaces and tabs, then the line end or the end of
  the enclosing body.  The line break before a delimiter belongs to it.
  Preamble and epilogue are not parts; a missing close delimiter ends the
  last part with the enclosing body; an enclosing boundary ends every part
  nested inside it.
* A multipart without a boundary, or whose boundary never opens a part, is
  text/plain, as is any unparseable Content-Type (RFC 2045 §5.2).  Parts of
  a multipart/digest default to message/rfc822.
* A multipart or message/rfc822 nested beyond ``max_depth``, or met after
  ``max_parts`` parts, is an opaque application/octet-stream leaf, and parts
  past ``max_parts`` are not listed: the bytes stay reachable through the
  enclosing part, and nothing recurses on message content or raises.
* Types, subtypes and parameters are reported as written (Dovecot does the
  same; clients compare them case-insensitively).  RFC 2231 continuations
  are joined but not decoded, as Dovecot does: ``filename*0*=`` and
  ``filename*1*=`` become one ``filename*`` whose value the client decodes.
"""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from zpop.imap.envelope import (
    HEADER_END,
    Address,
    Addresses,
    Envelope,
    Text,
    field_values,
    parse_envelope,
    text,
    unfold,
)
from zpop.imap.values import Adjacent, Value

#: No caller may ask for deeper nesting: BODYSTRUCTURE, its encoding and
#: the JSON form all recurse once per level.
MAX_DEPTH_CEILING: Final = 100

#: Parameters kept per Content-Type or Content-Disposition field; the rest
#: of a hostile parameter list is ignored.
MAX_PARAMS: Final = 100

#: Languages kept per Content-Language field.
MAX_LANGUAGES: Final = 100

Range = tuple[int, int]
Params = tuple[tuple[Text, Text], ...]


def _lower(value: Text) -> str:
    return (value if isinstance(value, str) else value.decode("latin-1")).lower()


@dataclass(slots=True)
class Part:
    """One MIME entity: the whole message, a part of a multipart, or the
    message inside a message/rfc822 part.

    ``children`` holds a multipart's parts, or the one encapsulated message
    of a message/rfc822 part (whose ``envelope`` is that message's).  The
    header runs from ``header_start`` to ``body_start`` and includes the
    blank line that ends it.  Treat a Part as read-only.
    """

    header_start: int
    body_start: int
    body_end: int
    type: Text = "text"
    subtype: Text = "plain"
    params: Params = ()
    content_id: Text | None = None
    description: Text | None = None
    #: Content-Transfer-Encoding as written; None is the 7bit default.
    encoding: Text | None = None
    #: Content-MD5 as written (RFC 3501 body-fld-md5; nothing is computed).
    md5: Text | None = None
    disposition: Text | None = None
    disposition_params: Params = ()
    language: tuple[Text, ...] = ()
    location: Text | None = None
    #: LF count of the body; kept for text/* and message/rfc822.
    lines: int = 0
    #: The boundary of a multipart.
    boundary: Text | None = None
    envelope: Envelope | None = None
    children: list[Part] = field(default_factory=list)

    @property
    def header_end(self) -> int:
        return self.body_start

    @property
    def size(self) -> int:
        """Octets of the body: BODYSTRUCTURE's body-fld-octets."""
        return self.body_end - self.body_start

    @property
    def is_multipart(self) -> bool:
        return bool(self.children) and _lower(self.type) == "multipart"

    @property
    def is_message(self) -> bool:
        """A message/rfc822 part with its encapsulated message parsed."""
        return bool(self.children) and _lower(self.type) != "multipart"

    @property
    def is_text(self) -> bool:
        return _lower(self.type) == "text"

    @property
    def message(self) -> Part:
        """The encapsulated message of a message/rfc822 part."""
        if not self.is_message:
            raise ValueError("not a message/rfc822 part")
        return self.children[0]

    def walk(self) -> Iterator[Part]:
        """This part and every part below it, in message order."""
        stack = [self]
        while stack:
            part = stack.pop()
            yield part
            stack.extend(reversed(part.children))

    def to_json(self) -> object:
        """A compact JSON-able form: a dict with "r" [header_start,
        body_start, body_end] and, where not at their defaults, "t" type,
        "s" subtype, "p" params, "id", "d" description, "e" encoding, "m"
        md5, "dt" disposition, "dp" its params, "la" languages, "lo"
        location, "n" lines, "b" boundary, "v" envelope (its ten fields as
        lists) and "c" children.  Strings are JSON strings, or {"x":
        base64} for header bytes that are not UTF-8."""
        out: dict[str, object] = {
            "r": [self.header_start, self.body_start, self.body_end]
        }
        if self.type != "text":
            out["t"] = _text_out(self.type)
        if self.subtype != "plain":
            out["s"] = _text_out(self.subtype)
        if self.params:
            out["p"] = _params_out(self.params)
        for key, value in (
            ("id", self.content_id),
            ("d", self.description),
            ("e", self.encoding),
            ("m", self.md5),
            ("dt", self.disposition),
            ("lo", self.location),
            ("b", self.boundary),
        ):
            if value is not None:
                out[key] = _text_out(value)
        if self.disposition_params:
            out["dp"] = _params_out(self.disposition_params)
        if self.language:
            out["la"] = [_text_out(lang) for lang in self.language]
        if self.lines:
            out["n"] = self.lines
        if self.envelope is not None:
            out["v"] = _envelope_out(self.envelope)
        if self.children:
            out["c"] = [child.to_json() for child in self.children]
        return out

    @classmethod
    def from_json(cls, obj: object) -> Part:
        """The Part that :meth:`to_json` gave ``obj`` for.

        Raises ValueError for anything to_json cannot have written.
        """
        return _part_in(obj, 0)


# JSON form.  Text is a JSON string, or {"x": base64} for bytes that are
# not UTF-8, so any JSON encoder can store it.


def _text_out(value: Text) -> object:
    if isinstance(value, str):
        return value
    return {"x": base64.b64encode(value).decode("ascii")}


def _params_out(params: Params) -> list[object]:
    return [[_text_out(name), _text_out(value)] for name, value in params]


def _addresses_out(addresses: Addresses) -> object:
    if addresses is None:
        return None
    return [[_optional_text_out(v) for v in address] for address in addresses]


def _optional_text_out(value: Text | None) -> object:
    return None if value is None else _text_out(value)


def _envelope_out(env: Envelope) -> list[object]:
    return [
        _optional_text_out(env.date),
        _optional_text_out(env.subject),
        *(_addresses_out(addresses) for addresses in env[2:8]),
        _optional_text_out(env.in_reply_to),
        _optional_text_out(env.message_id),
    ]


def _text_in(obj: object) -> Text:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict) and set(obj) == {"x"} and isinstance(obj["x"], str):
        try:
            return base64.b64decode(obj["x"], validate=True)
        except ValueError:
            pass
    raise ValueError(f"bad text in JSON part: {obj!r:.80}")


def _optional_text_in(obj: object) -> Text | None:
    return None if obj is None else _text_in(obj)


def _count_in(obj: object) -> int:
    if not isinstance(obj, int) or isinstance(obj, bool) or obj < 0:
        raise ValueError(f"bad number in JSON part: {obj!r:.80}")
    return obj


def _list_in(obj: object) -> list[object]:
    if not isinstance(obj, list):
        raise ValueError(f"expected a list in JSON part: {obj!r:.80}")
    return obj


def _params_in(obj: object) -> Params:
    params: list[tuple[Text, Text]] = []
    for pair in _list_in(obj):
        items = _list_in(pair)
        if len(items) != 2:
            raise ValueError(f"bad parameter in JSON part: {pair!r:.80}")
        params.append((_text_in(items[0]), _text_in(items[1])))
    return tuple(params)


def _addresses_in(obj: object) -> Addresses:
    if obj is None:
        return None
    addresses: list[Address] = []
    for item in _list_in(obj):
        fields = [_optional_text_in(v) for v in _list_in(item)]
        if len(fields) != 4:
            raise ValueError(f"bad address in JSON part: {item!r:.80}")
        addresses.append((fields[0], fields[1], fields[2], fields[3]))
    return tuple(addresses)


def _envelope_in(obj: object) -> Envelope:
    items = _list_in(obj)
    if len(items) != 10:
        raise ValueError("an envelope has ten fields")
    return Envelope(
        date=_optional_text_in(items[0]),
        subject=_optional_text_in(items[1]),
        from_=_addresses_in(items[2]),
        sender=_addresses_in(items[3]),
        reply_to=_addresses_in(items[4]),
        to=_addresses_in(items[5]),
        cc=_addresses_in(items[6]),
        bcc=_addresses_in(items[7]),
        in_reply_to=_optional_text_in(items[8]),
        message_id=_optional_text_in(items[9]),
    )


_JSON_KEYS: Final = frozenset(
    (
        "r",
        "t",
        "s",
        "p",
        "id",
        "d",
        "e",
        "m",
        "dt",
        "dp",
        "la",
        "lo",
        "n",
        "b",
        "v",
        "c",
    )
)


def _part_in(obj: object, depth: int) -> Part:
    if not isinstance(obj, dict) or not set(obj) <= _JSON_KEYS:
        raise ValueError(f"bad JSON part: {obj!r:.80}")
    if depth > MAX_DEPTH_CEILING:
        raise ValueError("JSON part nested too deeply")
    offsets = [_count_in(o) for o in _list_in(obj.get("r"))]
    if len(offsets) != 3 or not offsets[0] <= offsets[1] <= offsets[2]:
        raise ValueError(f"bad offsets in JSON part: {offsets!r:.80}")
    header_start, body_start, body_end = offsets
    lines = _count_in(obj.get("n", 0))
    part = Part(
        header_start,
        body_start,
        body_end,
        type=_text_in(obj.get("t", "text")),
        subtype=_text_in(obj.get("s", "plain")),
        params=_params_in(obj.get("p", [])),
        content_id=_optional_text_in(obj.get("id")),
        description=_optional_text_in(obj.get("d")),
        encoding=_optional_text_in(obj.get("e")),
        md5=_optional_text_in(obj.get("m")),
        disposition=_optional_text_in(obj.get("dt")),
        disposition_params=_params_in(obj.get("dp", [])),
        language=tuple(_text_in(lang) for lang in _list_in(obj.get("la", []))),
        location=_optional_text_in(obj.get("lo")),
        lines=lines,
        boundary=_optional_text_in(obj.get("b")),
        envelope=None if obj.get("v") is None else _envelope_in(obj["v"]),
        children=[_part_in(c, depth + 1) for c in _list_in(obj.get("c", []))],
    )
    kind = _lower(part.type), _lower(part.subtype)
    if kind[0] == "multipart" and not part.children:
        raise ValueError("a multipart part has parts")
    if kind[0] != "multipart" and (part.children or kind == ("message", "rfc822")):
        if kind != ("message", "rfc822") or len(part.children) != 1:
            raise ValueError("only a message/rfc822 part holds a message")
        if part.envelope is None:
            raise ValueError("a message/rfc822 part has an envelope")
    return part


# Header fields.

_CONTENT_FIELDS: Final = re.compile(
    rb"^(content-(?:type|transfer-encoding|id|description|disposition|language"
    rb"|location|md5)|mime-version)[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)

# RFC 2045 token: any CHAR but SP, CTLs and tspecials; 8-bit bytes are let
# through as Dovecot lets them.
_TOKEN: Final = rb'[^\x00-\x20\x7f()<>@,;:\\"/\[\]?=]+'
_CONTENT_TYPE: Final = re.compile(
    rb"[ \t]*(" + _TOKEN + rb")[ \t]*/[ \t]*(" + _TOKEN + rb")[^;]*"
)
_LEADING_TOKEN: Final = re.compile(rb"[ \t]*(" + _TOKEN + rb")[^;]*")
_LONE_TOKEN: Final = re.compile(rb"[ \t]*(" + _TOKEN + rb")[ \t]*(?:\([^()]*\)[ \t]*)*")
# A parameter: a quoted value (an open quote runs to the end), or anything
# up to the next ";" (unquoted file names with spaces and slashes are
# common, and Python's email reads them so too).
_PARAM: Final = re.compile(
    rb";[ \t]*(" + _TOKEN + rb')[ \t]*=[ \t]*(?:"((?:[^"\\]|\\[\s\S]?)*)"?|([^;]*))'
)
_ESCAPE: Final = re.compile(rb"\\([\s\S])")
_RFC2231_NAME: Final = re.compile(rb"([^*]+)\*(\d*)(\*?)")
_LANGUAGE: Final = re.compile(rb"[ \t]*([A-Za-z0-9-]+)[ \t]*")
_COMMENT: Final = re.compile(rb"\([^()]*\)")


def _params(raw: bytes) -> list[tuple[bytes, bytes]]:
    """The ``; name=value`` parameters in ``raw``, RFC 2231 parts joined."""
    found: list[tuple[bytes, bytes]] = []
    for match in itertools.islice(_PARAM.finditer(raw), MAX_PARAMS):
        name, quoted, bare = match.groups()
        if quoted is not None:
            value = _ESCAPE.sub(rb"\1", quoted)
        else:
            value = bare.rstrip(b" \t")
        found.append((name, value))
    return _join_rfc2231(found)


def _join_rfc2231(params: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """RFC 2231 ``name*N[*]`` sections joined into one ``name[*]``, as
    Dovecot's rfc2231-parser.c does: plain parameters first, in order, then
    the joined ones; a name whose sections are not 0..n-1 keeps them apart.
    The value stays encoded (``charset'lang'%xx``) for the client."""
    plain: list[tuple[bytes, bytes]] = []
    sections: dict[bytes, list[tuple[int, bool, bytes, bytes]]] = {}
    for name, value in params:
        match = _RFC2231_NAME.fullmatch(name)
        if match is None:
            plain.append((name, value))
            continue
        base, digits, star = match.groups()
        extended = bool(star) or not digits
        index = int(digits) if digits else 0
        sections.setdefault(base.lower(), []).append((index, extended, base, value))
    joined: list[tuple[bytes, bytes]] = []
    for key in sorted(sections):
        group = sorted(sections[key], key=lambda s: s[0])
        base = group[0][2]
        if [s[0] for s in group] != list(range(len(group))):
            for index, extended, _, value in group:
                suffix = b"*%d*" % index if extended else b"*%d" % index
                joined.append((base + suffix, value))
            continue
        if not any(s[1] for s in group):
            joined.append((base, b"".join(s[3] for s in group)))
            continue
        value = b"" if group[0][1] else b"''"
        for _, extended, _, section in group:
            value += section if extended else section.replace(b"%", b"%25")
        joined.append((base + b"*", value))
    return plain + joined


def _text_params(params: list[tuple[bytes, bytes]]) -> Params:
    return tuple((text(name), text(value)) for name, value in params)


def _param(params: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in params:
        if key.lower() == name:
            return value
    return None


def _languages(raw: bytes) -> tuple[Text, ...]:
    """Content-Language tags up to the first one that is not a tag."""
    tags: list[Text] = []
    for item in _COMMENT.sub(b"", raw).split(b",")[:MAX_LANGUAGES]:
        match = _LANGUAGE.fullmatch(item)
        if match is None:
            break
        tags.append(text(match.group(1)))
    return tuple(tags)


# Parsing.

_OPAQUE: Final = ("application", "octet-stream")


class _Parser:
    """One walk over one message, depth first in message order, so that the
    part budget goes to the first ``max_parts`` parts as a streaming parser
    would give it.  An explicit stack instead of recursion: nesting depth is
    message content."""

    def __init__(self, message: bytes, max_depth: int, max_parts: int) -> None:
        self._message = message
        self._max_depth = max_depth
        self._budget = max_parts
        self._delimiters: dict[bytes, tuple[re.Pattern[bytes], re.Pattern[bytes]]] = {}

    def run(self) -> Part:
        root, children = self._part(0, len(self._message), 0, False, False)
        stack: list[tuple[Part, Iterator[Range], int]] = []
        if children is not None:
            stack.append((root, children, 1))
        while stack and self._budget > 0:
            parent, spans, depth = stack[-1]
            span = next(spans, None)
            if span is None:
                stack.pop()
                continue
            multipart = _lower(parent.type) == "multipart"
            digest = multipart and _lower(parent.subtype) == "digest"
            child, grandchildren = self._part(*span, depth, multipart, digest)
            parent.children.append(child)
            if not multipart:
                parent.envelope = parse_envelope(
                    self._message[child.header_start : child.body_start]
                )
            if grandchildren is not None:
                stack.append((child, grandchildren, depth + 1))
        return root

    def _part(
        self, start: int, end: int, depth: int, in_multipart: bool, in_digest: bool
    ) -> tuple[Part, Iterator[Range] | None]:
        """The Part spanning ``start``..``end``, and the spans of its
        children if it is a multipart or message/rfc822 to descend into."""
        self._budget -= 1
        message = self._message
        if message.startswith(b"\n", start, end):
            body_start = start + 1
        elif message.startswith(b"\r\n", start, end):
            body_start = start + 2
        else:
            blank = HEADER_END.search(message, start, end)
            body_start = end if blank is None else blank.end()
        part = Part(start, body_start, end)
        fields = field_values(message[start:body_start], _CONTENT_FIELDS)
        mime = in_multipart or "mime-version" in fields or "content-type" in fields
        if not mime:
            fields = {}
        raw_params: list[tuple[bytes, bytes]] = []
        content_type = fields.get("content-type")
        if content_type is None:
            if in_digest:
                part.type, part.subtype = "message", "rfc822"
        else:
            value = unfold(content_type)
            match = _CONTENT_TYPE.match(value)
            if match is not None:
                part.type, part.subtype = text(match.group(1)), text(match.group(2))
                raw_params = _params(value[match.end() :])
                part.params = _text_params(raw_params)
        self._content_fields(part, fields)

        children: Iterator[Range] | None = None
        descend = depth < self._max_depth and self._budget > 0
        kind = _lower(part.type), _lower(part.subtype)
        if kind[0] == "multipart":
            boundary = _param(raw_params, b"boundary")
            if boundary and descend:
                children = self._children(body_start, end, boundary)
                first = next(children, None)
                children = None if first is None else itertools.chain([first], children)
            if children is not None:
                part.boundary = text(boundary or b"")
            elif boundary and not descend:
                part.type, part.subtype = _OPAQUE
                part.params = ()
            else:
                part.type, part.subtype, part.params = "text", "plain", ()
        elif kind == ("message", "rfc822"):
            if descend:
                children = iter([(body_start, end)])
            else:
                part.type, part.subtype = _OPAQUE
                part.params = ()
        if part.is_text or (children is not None and kind[0] == "message"):
            part.lines = message.count(b"\n", body_start, end)
        return part, children

    @staticmethod
    def _content_fields(part: Part, fields: dict[str, bytes]) -> None:
        def string(name: str) -> Text | None:
            raw = fields.get(name)
            return None if raw is None else text(unfold(raw))

        part.content_id = string("content-id")
        part.description = string("content-description")
        part.location = string("content-location")
        part.md5 = string("content-md5")
        encoding = fields.get("content-transfer-encoding")
        if encoding is not None:
            match = _LONE_TOKEN.fullmatch(unfold(encoding))
            part.encoding = None if match is None else text(match.group(1))
        disposition = fields.get("content-disposition")
        if disposition is not None:
            match = _LEADING_TOKEN.match(unfold(disposition))
            if match is not None:
                part.disposition = text(match.group(1))
                part.disposition_params = _text_params(
                    _params(unfold(disposition)[match.end() :])
                )
        language = fields.get("content-language")
        if language is not None:
            part.language = _languages(unfold(language))

    def _children(self, start: int, end: int, boundary: bytes) -> Iterator[Range]:
        """Spans of the parts between delimiters of ``boundary`` in the body
        ``start``..``end``; lazily, so a million delimiters cost nothing
        past the part budget."""
        patterns = self._delimiters.get(boundary)
        if patterns is None:
            # The line end is looked ahead at, not taken, so that the next
            # delimiter line can start with it.
            tail = rb"(--)?[ \t]*(?=\r?\n|\Z)"
            literal = re.escape(boundary)
            patterns = (
                re.compile(rb"--" + literal + tail),
                re.compile(rb"\n--" + literal + tail),
            )
            self._delimiters[boundary] = patterns
        first, rest = patterns
        message = self._message

        def delimiters() -> Iterator[tuple[int, int, bool]]:
            """(start of the line break before it, end of its line, close)."""
            opening = first.match(message, start, end)
            if opening is not None:
                yield start, self._line_end(opening.end(), end), bool(opening.group(1))
            for match in rest.finditer(message, start, end):
                line_break = match.start()
                if line_break > start and message[line_break - 1] == 0x0D:
                    line_break -= 1
                yield line_break, self._line_end(match.end(), end), bool(match.group(1))

        part_start: int | None = None
        for line_break, after, close in delimiters():
            if part_start is not None:
                yield part_start, max(part_start, line_break)
            if close:
                return
            part_start = after
        if part_start is not None:
            yield part_start, end

    def _line_end(self, pos: int, end: int) -> int:
        if self._message.startswith(b"\r\n", pos, end):
            return pos + 2
        if self._message.startswith(b"\n", pos, end):
            return pos + 1
        return pos


def parse(message: bytes, max_depth: int = 20, max_parts: int = 10000) -> Part:
    """The part tree of ``message``; never raises for its content.

    ``max_depth`` bounds how deep parts may nest below the whole message
    (an encapsulated message counts as a level), ``max_parts`` how many
    parts the tree may hold, the whole message included.
    """
    if not 0 <= max_depth <= MAX_DEPTH_CEILING:
        raise ValueError(f"max_depth must be within 0..{MAX_DEPTH_CEILING}")
    if max_parts < 1:
        raise ValueError("max_parts must be at least 1")
    return _Parser(message, max_depth, max_parts).run()


# BODY and BODYSTRUCTURE.


def _param_list(params: Params, default_charset: bool = False) -> Value:
    values: list[Value] = [v for pair in params for v in pair]
    if default_charset and not any(_lower(name) == "charset" for name, _ in params):
        values += ["charset", "us-ascii"]
    return tuple(values) or None


def _extension(part: Part) -> list[Value]:
    """body-fld-dsp, body-fld-lang and body-fld-loc."""
    disposition: Value = None
    if part.disposition is not None:
        disposition = (part.disposition, _param_list(part.disposition_params))
    return [disposition, tuple(part.language) or None, part.location]


def bodystructure(part: Part, extended: bool = True) -> Value:
    """BODYSTRUCTURE (``extended``) or BODY of ``part`` (RFC 3501 §9 body),
    with Dovecot's defaults: text/plain, a us-ascii charset for text parts
    that name none, 7bit."""
    if part.is_multipart:
        fields: list[Value] = [
            Adjacent(bodystructure(c, extended) for c in part.children),
            part.subtype,
        ]
        if extended:
            fields += [_param_list(part.params), *_extension(part)]
        return tuple(fields)
    fields = [
        part.type,
        part.subtype,
        _param_list(part.params, default_charset=part.is_text),
        part.content_id,
        part.description,
        "7bit" if part.encoding is None else part.encoding,
        part.size,
    ]
    if part.is_message:
        assert part.envelope is not None
        fields += [
            part.envelope.value(),
            bodystructure(part.message, extended),
            part.lines,
        ]
    elif part.is_text:
        fields.append(part.lines)
    if extended:
        fields += [part.md5, *_extension(part)]
    return tuple(fields)
