"""Messages for the IMAP structure tests, as stored: CRLF line ends.

Each is realistic (what real clients and list servers send) or broken the
way real mail is broken.  ``CORPUS`` maps a name to the raw bytes.
"""

from __future__ import annotations

import base64
import email.utils
import urllib.parse

from zpop.imap.sections import Section, header_fields, section_range
from zpop.imap.structure import Part, bodystructure, parse
from zpop.imap.values import Value, encode


def crlf(*lines: str | bytes) -> bytes:
    """``lines`` joined with CRLF, each line ending with one."""
    return b"".join(
        (line.encode("utf-8") if isinstance(line, str) else line) + b"\r\n"
        for line in lines
    )


def _b64_lines(data: bytes, width: int = 76) -> list[str]:
    encoded = base64.b64encode(data).decode("ascii")
    return [encoded[i : i + width] for i in range(0, len(encoded), width)]


#: Stand-ins for binary attachments: deterministic, every byte value.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3
PDF = b"%PDF-1.4\n" + bytes(reversed(range(256))) * 5 + b"%%EOF\n"

PLAIN_ASCII = crlf(
    "Return-Path: <alice@example.org>",
    "Received: from mx.example.org (mx.example.org [192.0.2.1])",
    "\tby mail.example.net with ESMTPS id 4F2B1C0; Mon, 3 Jun 2024 09:12:44 +0000",
    "Message-ID: <20240603091244.GA1234@example.org>",
    "Date: Mon, 3 Jun 2024 11:12:40 +0200",
    "From: Alice Example <alice@example.org>",
    "To: Bob <bob@example.net>",
    "Subject: Lunch on Thursday?",
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=us-ascii",
    "Content-Transfer-Encoding: 7bit",
    "",
    "Hi Bob,",
    "",
    "are you free for lunch on Thursday? The usual place at noon.",
    "",
    "Alice",
)

UTF8_8BIT = crlf(
    "Message-ID: <b1f0c2e4@mail.example.de>",
    "Date: Tue, 4 Jun 2024 08:00:00 +0200",
    "From: Jörg Müller <joerg@example.de>",
    'To: "Zoë Ångström" <zoe@example.se>',
    "Subject: Grüße aus Köln",
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=utf-8; format=flowed",
    "Content-Transfer-Encoding: 8bit",
    "",
    "Hallo Zoë,",
    "",
    "viele Grüße aus Köln – bis bald! ☕",
    "",
    "Jörg",
)

ENCODED_WORDS = crlf(
    "Message-ID: <CAF=x9Q@mail.example.com>",
    "Date: Wed, 5 Jun 2024 10:30:00 -0400",
    "From: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>",
    "To: =?UTF-8?B?8J+Yig==?= <smile@example.com>, =?utf-8?q?Fran=C3=A7ois?=",
    " <francois@example.fr>",
    "Subject: =?UTF-8?B?UsOpdW5pb24gZGUgbCfDqXF1aXBl?=",
    " =?UTF-8?Q?_=E2=80=93_jeudi?=",
    "MIME-Version: 1.0",
    'Content-Type: text/plain; charset="UTF-8"',
    "Content-Transfer-Encoding: quoted-printable",
    "",
    "Bonjour =C3=A0 tous,",
    "",
    "la r=C3=A9union est d=C3=A9plac=C3=A9e =C3=A0 jeudi. Cette ligne est un pe=",
    "u longue et coup=C3=A9e.",
)

ALTERNATIVE = crlf(
    "Message-ID: <alt.1@news.example.com>",
    "Date: Thu, 6 Jun 2024 07:00:00 +0000",
    "From: Example News <news@example.com>",
    "To: reader@example.net",
    "Subject: Your weekly digest",
    "MIME-Version: 1.0",
    "Content-Type: multipart/alternative;",
    ' boundary="----=_Part_1_1234.5678"',
    "",
    "This is a multi-part message in MIME format.",
    "",
    "------=_Part_1_1234.5678",
    "Content-Type: text/plain; charset=utf-8",
    "Content-Transfer-Encoding: quoted-printable",
    "",
    "Top stories this week =E2=80=94 read online.",
    "",
    "------=_Part_1_1234.5678",
    "Content-Type: text/html; charset=utf-8",
    "Content-Transfer-Encoding: base64",
    "",
    *_b64_lines(
        "<html><body><h1>Top stories</h1><p>This week \u2014 read online."
        "</p></body></html>\r\n".encode()
    ),
    "------=_Part_1_1234.5678--",
    "",
)

MIXED_ATTACHMENT = crlf(
    "Message-ID: <report.2024@corp.example>",
    "Date: Fri, 7 Jun 2024 16:45:00 +0100",
    "From: Carol <carol@corp.example>",
    "To: Dave <dave@corp.example>",
    "Subject: Q2 report",
    "MIME-Version: 1.0",
    'Content-Type: multipart/mixed; boundary="mixed-boundary-42"',
    "",
    "--mixed-boundary-42",
    "Content-Type: text/plain; charset=utf-8",
    "",
    "Report attached.",
    "--mixed-boundary-42",
    'Content-Type: application/pdf; name="naive resume.pdf"',
    "Content-Transfer-Encoding: base64",
    "Content-Disposition: attachment;",
    " filename*0*=utf-8''na%C3%AFve%20r;",
    " filename*1*=%C3%A9sum%C3%A9.pdf;",
    " size=1295",
    "",
    *_b64_lines(PDF),
    "--mixed-boundary-42--",
    "",
)

NESTED = crlf(
    "Message-ID: <nested@mua.example>",
    "Date: Sat, 8 Jun 2024 12:00:00 +0000",
    "From: Erin <erin@mua.example>",
    "To: Frank <frank@mua.example>",
    "Subject: Photos from the trip",
    "MIME-Version: 1.0",
    'Content-Type: multipart/mixed; boundary="outer"',
    "",
    "--outer",
    'Content-Type: multipart/alternative; boundary="middle"',
    "",
    "--middle",
    "Content-Type: text/plain; charset=us-ascii",
    "",
    "Here is the photo.",
    "--middle",
    'Content-Type: multipart/related; boundary="inner"; type="text/html"',
    "",
    "--inner",
    "Content-Type: text/html; charset=us-ascii",
    "",
    '<p>Here is the photo:</p><img src="cid:photo1@mua.example">',
    "--inner",
    "Content-Type: image/png",
    "Content-Transfer-Encoding: base64",
    "Content-ID: <photo1@mua.example>",
    'Content-Disposition: inline; filename="photo.png"',
    "",
    *_b64_lines(PNG),
    "--inner--",
    "--middle--",
    "--outer",
    'Content-Type: text/csv; charset=utf-8; name="expenses.csv"',
    'Content-Disposition: attachment; filename="expenses.csv"',
    "Content-Language: en, de",
    "",
    "item,amount",
    "train,42.00",
    "--outer--",
)

RFC822_ATTACHMENT = crlf(
    "Message-ID: <fwd.1@example.com>",
    "Date: Sun, 9 Jun 2024 18:00:00 +0200",
    "From: Grace <grace@example.com>",
    "To: Heidi <heidi@example.com>",
    "Subject: Fwd: Meeting notes",
    "MIME-Version: 1.0",
    'Content-Type: multipart/mixed; boundary="fwd-outer"',
    "",
    "--fwd-outer",
    "Content-Type: text/plain; charset=us-ascii",
    "",
    "See the forwarded message.",
    "--fwd-outer",
    "Content-Type: message/rfc822",
    "Content-Description: Forwarded message",
    "Content-Disposition: inline",
    "",
    "Message-ID: <notes.7@example.org>",
    "Date: Fri, 7 Jun 2024 09:00:00 +0000",
    "From: Ivan <ivan@example.org>",
    "Reply-To: team@example.org",
    "To: team@example.org",
    "Cc: Judy <judy@example.org>",
    "Subject: Meeting notes",
    "MIME-Version: 1.0",
    'Content-Type: multipart/alternative; boundary="fwd-inner"',
    "",
    "--fwd-inner",
    "Content-Type: text/plain; charset=us-ascii",
    "",
    "1. Budget approved.",
    "--fwd-inner",
    "Content-Type: text/html; charset=us-ascii",
    "",
    "<ol><li>Budget approved.</li></ol>",
    "--fwd-inner--",
    "",
    "--fwd-outer--",
)

DIGEST = crlf(
    "Message-ID: <digest.99@lists.example.org>",
    "Date: Mon, 10 Jun 2024 00:00:00 +0000",
    "From: list-request@lists.example.org",
    "To: list@lists.example.org",
    "Subject: List digest, Vol 3, Issue 99",
    "MIME-Version: 1.0",
    'Content-Type: multipart/digest; boundary="digest-sep"',
    "",
    "--digest-sep",
    "Content-Type: text/plain; charset=us-ascii",
    "Content-Description: Today's Topics",
    "",
    "1. Hello (Mallory)",
    "2. Re: Hello (Niaj)",
    "",
    "--digest-sep",
    "",
    "From: Mallory <mallory@example.com>",
    "Subject: Hello",
    "Date: Sun, 9 Jun 2024 10:00:00 +0000",
    "",
    "Hello list.",
    "",
    "--digest-sep",
    "",
    "From: Niaj <niaj@example.com>",
    "Subject: Re: Hello",
    "In-Reply-To: <hello@example.com>",
    "Date: Sun, 9 Jun 2024 11:00:00 +0000",
    "",
    "Hi Mallory.",
    "",
    "--digest-sep--",
)

MISSING_CLOSE_BOUNDARY = crlf(
    "From: truncated@example.com",
    "Subject: cut short",
    "MIME-Version: 1.0",
    'Content-Type: multipart/mixed; boundary="never-closed"',
    "",
    "--never-closed",
    "Content-Type: text/plain",
    "",
    "first",
    "--never-closed",
    "Content-Type: text/plain",
    "",
    "second, and the message ends here",
)

BOUNDARY_NEVER_APPEARS = crlf(
    "From: broken@example.com",
    "Subject: no parts",
    "MIME-Version: 1.0",
    'Content-Type: multipart/mixed; boundary="not-there"',
    "",
    "--almost-there",
    "Just text; the boundary never appears.",
)

NO_BOUNDARY_PARAM = crlf(
    "From: broken@example.com",
    "Subject: no boundary",
    "MIME-Version: 1.0",
    "Content-Type: multipart/mixed",
    "",
    "--x",
    "Content-Type: text/plain",
    "",
    "hi",
    "--x--",
)

NO_CONTENT_TYPE = crlf(
    "From: old-client@example.com",
    "To: someone@example.com",
    "Subject: plain old mail",
    "Date: 1 Jan 1999 00:00:00 GMT",
    "",
    "No MIME headers at all.",
)

INVALID_CONTENT_TYPE = crlf(
    "From: sender@example.com",
    "Subject: bad type",
    "MIME-Version: 1.0",
    "Content-Type: text",
    "",
    "The type has no subtype.",
)

DUPLICATE_HEADERS = crlf(
    "From: first@example.com",
    "From: second@example.com",
    "Subject: first subject",
    "Subject: second subject",
    "MIME-Version: 1.0",
    "Content-Type: text/html; charset=utf-8",
    "Content-Type: text/plain; charset=us-ascii",
    "",
    "<p>which one?</p>",
)

HEADER_WITHOUT_COLON = crlf(
    "From: sloppy@example.com",
    "Subject: a header line without a colon",
    "this line has no colon",
    "To: victim@example.com",
    "",
    "Body text.",
)

#: Stored CRLF everywhere but two places: a bare LF inside the text, and a
#: bare LF before a delimiter line.
BARE_LF = (
    crlf(
        "From: mixed-eol@example.com",
        "Subject: bare LF",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="eol"',
        "",
        "--eol",
        "Content-Type: text/plain",
        "",
    )
    + b"one\ntwo\r\nthree\n--eol\r\n"
    + crlf("Content-Type: text/plain", "", "four", "--eol--")
)

EMPTY_BODY = crlf(
    "From: nobody@example.com",
    "Subject: empty",
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=us-ascii",
    "",
)

HEADER_ONLY = b"From: nobody@example.com\r\nSubject: header only\r\n"


def _lines(count: int, widths: list[int]) -> list[str]:
    """``count`` lines whose lengths cycle through ``widths``."""
    return [f"line {i} ".ljust(widths[i % len(widths)], "x") for i in range(count)]


#: RFC 3501 §7.4.2's BODYSTRUCTURE example: a multipart/mixed of a
#: 1152-octet, 23-line text part and a 4554-octet, 73-line base64 part.
#: 22 lines of 50 characters and one of 6, each with CRLF: 1152 octets.
_RFC_PART1 = [f"text line {i} ".ljust(50, "-") for i in range(22)] + ["final."]
#: 4408 base64 characters (3306 octets) in 72 lines of 60 and one of 88,
#: each with CRLF: 4554 octets.
_RFC_B64 = base64.b64encode(bytes(i * 7 % 256 for i in range(3306))).decode()
_RFC_PART2 = [_RFC_B64[i : i + 60] for i in range(0, 4320, 60)] + [_RFC_B64[4320:]]

RFC3501_MIXED = crlf(
    "Date: Tue, 23 Jul 1996 16:34:07 -0700 (PDT)",
    "From: Mark Crispin <mrc@cac.washington.edu>",
    "Subject: compiler diff",
    "MIME-Version: 1.0",
    'Content-Type: MULTIPART/MIXED; BOUNDARY="16819560-2078917053-688350843:#11603"',
    "",
    "--16819560-2078917053-688350843:#11603",
    "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII",
    "Content-Transfer-Encoding: 7BIT",
    "",
    *_RFC_PART1,
    "",
    "--16819560-2078917053-688350843:#11603",
    "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff",
    "Content-ID: <960723163407.20117h@cac.washington.edu>",
    "Content-Description: Compiler diff",
    "Content-Transfer-Encoding: BASE64",
    "",
    *_RFC_PART2,
    "",
    "--16819560-2078917053-688350843:#11603--",
)

#: RFC 3501 §8's sample message (FETCH 12): ENVELOPE and BODY as given
#: there, a 3028-octet, 92-line text body (84 lines of 31 characters and 8
#: of 30, each with CRLF).  The RFC does not show the message's
#: Content-Transfer-Encoding; "7BIT" in its BODY needs one written so.
RFC3501_SAMPLE = crlf(
    "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
    "From: Terry Gray <gray@cac.washington.edu>",
    "Subject: IMAP4rev1 WG mtg summary and minutes",
    "To: imap@cac.washington.edu",
    "cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>",
    "Message-Id: <B27397-0100000@cac.washington.edu>",
    "MIME-Version: 1.0",
    "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII",
    "Content-Transfer-Encoding: 7BIT",
    "",
    *_lines(92, [31] * 21 + [30, 30]),
)

CORPUS: dict[str, bytes] = {
    "plain_ascii": PLAIN_ASCII,
    "utf8_8bit": UTF8_8BIT,
    "encoded_words": ENCODED_WORDS,
    "alternative": ALTERNATIVE,
    "mixed_attachment": MIXED_ATTACHMENT,
    "nested": NESTED,
    "rfc822_attachment": RFC822_ATTACHMENT,
    "digest": DIGEST,
    "missing_close_boundary": MISSING_CLOSE_BOUNDARY,
    "boundary_never_appears": BOUNDARY_NEVER_APPEARS,
    "no_boundary_param": NO_BOUNDARY_PARAM,
    "no_content_type": NO_CONTENT_TYPE,
    "invalid_content_type": INVALID_CONTENT_TYPE,
    "duplicate_headers": DUPLICATE_HEADERS,
    "header_without_colon": HEADER_WITHOUT_COLON,
    "bare_lf": BARE_LF,
    "empty_body": EMPTY_BODY,
    "header_only": HEADER_ONLY,
    "rfc3501_mixed": RFC3501_MIXED,
    "rfc3501_sample": RFC3501_SAMPLE,
}


def _lf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


#: Messages from Dovecot's src/lib-imap/test-imap-bodystructure.c, with
#: CRLF for LF (Dovecot counts sizes as CRLF, so its expected sizes hold).
DOVECOT_PLAIN = _lf(
    "From: user@domain.org\n"
    "Date: Sat, 24 Mar 2017 23:00:00 +0200\n"
    "Mime-Version: 1.0\n"
    "Content-Type: text/plain; charset=us-ascii\n"
    "\n"
    "body\n"
)
DOVECOT_8BIT = _lf(
    "From: user@domain.org\n"
    "Date: Sat, 24 Mar 2017 23:00:00 +0200\n"
    "Mime-Version: 1.0\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "body\n"
    "\n"
)
DOVECOT_FOLDED_BOUNDARY = _lf(
    "From: user@domain.org\n"
    "Date: Sat, 24 Mar 2007 23:00:00 +0200\n"
    "Mime-Version: 1.0\n"
    'Content-Type: multipart/mixed; boundary="foo\n'
    ' bar"\n'
    "\n"
    "--foo bar\n"
    "Content-Type: text/x-myown; charset=us-ascii\n"
    "\n"
    "hello\n"
    "\n"
    "--foo bar--\n"
    "\n"
)
DOVECOT_RFC822 = _lf(
    "From: user@domain.org\n"
    "Date: Sat, 24 Mar 2017 23:00:00 +0200\n"
    "Mime-Version: 1.0\n"
    'Content-Type: multipart/mixed; boundary="foo bar"\n'
    "\n"
    "--foo bar\n"
    "Content-Type: text/plain; charset=us-ascii\n"
    "Content-ID: <A.frop.example.com>\n"
    "Content-Description: Container message\n"
    "\n"
    "See attached...\n"
    "\n"
    "--foo bar\n"
    "Content-Type: message/rfc822\n"
    "Content-ID: <B.frop.example.com>\n"
    "Content-Description: Forwarded\n"
    "\n"
    "From: user@domain.org\n"
    "Date: Sat, 24 Mar 2017 23:00:00 +0200\n"
    "Mime-Version: 1.0\n"
    "Content-Type: text/plain; charset=us-ascii\n"
    "\n"
    "body\n"
    "\n"
    "--foo bar--\n"
)
DOVECOT_EVERYTHING = _lf(
    "From: user@domain.org\n"
    "Date: Sat, 24 Mar 2007 23:00:00 +0200\n"
    "Mime-Version: 1.0\n"
    'Content-Type: multipart/mixed; boundary="foo\n'
    ' bar"\n'
    "\n"
    "Root MIME prologue\n"
    "\n"
    "--foo bar\n"
    'Content-Type: text/x-myown; charset=us-ascii; foo="quoted\\"string"\n'
    "Content-ID: <foo@example.com>\n"
    "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n"
    "Content-Disposition: inline; foo=bar\n"
    "Content-Description: hellodescription\n"
    "Content-Language: en, fi, se\n"
    "Content-Location: http://example.com/test.txt\n"
    "\n"
    "hello\n"
    "\n"
    "--foo bar\n"
    "Content-Type: message/rfc822\n"
    "\n"
    "From: sub@domain.org\n"
    "To: sub-to1@domain.org, sub-to2@domain.org\n"
    "Date: Sun, 12 Aug 2012 12:34:56 +0300\n"
    "Subject: submsg\n"
    'Content-Type: multipart/alternative; boundary="sub1"\n'
    "\n"
    "Sub MIME prologue\n"
    "--sub1\n"
    "Content-Type: text/html\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "<p>Hello world</p>\n"
    "\n"
    "--sub1\n"
    "Content-Type: text/plain\n"
    "Content-Transfer-Encoding: ?invalid\n"
    "\n"
    "Hello another world\n"
    "\n"
    "--sub1--\n"
    "Sub MIME epilogue\n"
    "\n"
    "--foo bar--\n"
    "Root MIME epilogue\n"
)
#: Dovecot writes a 0-octet text/plain part into this multipart; zpop
#: reads a multipart whose boundary opens no part as text/plain.
DOVECOT_EMPTY_MULTIPART = _lf('Content-Type: multipart/mixed; boundary="foo"\n\n')

DOVECOT = {
    "dovecot_plain": DOVECOT_PLAIN,
    "dovecot_8bit": DOVECOT_8BIT,
    "dovecot_folded_boundary": DOVECOT_FOLDED_BOUNDARY,
    "dovecot_rfc822": DOVECOT_RFC822,
    "dovecot_everything": DOVECOT_EVERYTHING,
    "dovecot_empty_multipart": DOVECOT_EMPTY_MULTIPART,
}

#: RFC 3501 §7.4.2's example ENVELOPE.
RFC3501_ENVELOPE = (
    b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" '
    b'"IMAP4rev1 WG mtg summary and minutes" '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
    b'((NIL NIL "imap" "cac.washington.edu")) '
    b'((NIL NIL "minutes" "CNRI.Reston.VA.US")'
    b'("John Klensin" NIL "KLENSIN" "MIT.EDU")) '
    b'NIL NIL "<B27397-0100000@cac.washington.edu>")'
)


# -- helpers the structure, envelope and section tests share ------------


def wire(value: Value) -> bytes:
    return encode(value)


def structure(raw: bytes, extended: bool = True) -> bytes:
    return encode(bodystructure(parse(raw), extended))


def body(raw: bytes, part: Part) -> bytes:
    return raw[part.body_start : part.body_end]


def read(raw: bytes, ranges: list[tuple[int, int]]) -> bytes:
    return b"".join(raw[start:end] for start, end in ranges)


def fetch(raw: bytes, section: Section) -> bytes:
    """What a server sends for BODY[section], done as the module says."""
    ranges = section_range(parse(raw), section)
    if section.filtered:
        return header_fields(read(raw, ranges), section.fields, section.exclude)
    return read(raw, ranges)


def b64_size(data: bytes, width: int = 76) -> int:
    """Octets of ``data`` in base64 lines of ``width`` joined by CRLF."""
    encoded = len(base64.b64encode(data))
    return encoded + 2 * (-(-encoded // width) - 1)


def lower_type(part: Part) -> str:
    def s(value: str | bytes) -> str:
        return value if isinstance(value, str) else value.decode("latin-1")

    return f"{s(part.type)}/{s(part.subtype)}".lower()


def param(params: tuple[tuple[str | bytes, str | bytes], ...], name: str) -> str | None:
    for key, value in params:
        if isinstance(key, str) and key.lower() == name:
            assert isinstance(value, str)
            return value
    return None


def filename(part: Part) -> str | None:
    """The part's file name decoded as a client would: RFC 2231 joined
    value first, then filename, then the Content-Type name."""
    extended = param(part.disposition_params, "filename*")
    if extended is not None:
        charset, _, encoded = email.utils.decode_rfc2231(extended)
        return urllib.parse.unquote(encoded, encoding=charset or "us-ascii")
    return param(part.disposition_params, "filename") or param(part.params, "name")
