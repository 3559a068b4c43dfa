"""A bounded network fuzzer for a real zpop server, on every listener.

    python bench/fuzz.py --minutes 10 --seed 1      # starts its own server
    python bench/fuzz.py --seconds 20 --seed 7 --json out.json
    python bench/fuzz.py --replay 7:123             # one session, verbose

Sessions start from real ones (a POP3 login and commands, an SMTP
EHLO/STARTTLS/AUTH/MAIL/RCPT/DATA transaction, STLS) and are mutated:
random bytes, over-long lines, missing CRLF, bare CR/LF, NULs, huge,
negative and non-numeric arguments, pipelined bursts, byte-wise
fragments, half-finished or corrupted TLS handshakes, abrupt closes (FIN
or RST) at random points, SASL garbage, DATA with smuggling sequences,
commands pipelined after STLS/STARTTLS; some sessions are pure random
bytes. After each batch the server must (a) still serve real clients
(smtplib submission and MX delivery to a probe account, then a poplib
POP3_SSL login, STAT, RETR and QUIT that sees both messages), (b) stay
within an RSS bound (VmRSS from /proc/PID/status against the value after
warm-up) and (c) have logged no "Unhandled Error" and no "Traceback".

A session's bytes are a pure function of (seed, session index) except for
the TLS ClientHello randomness; timing between concurrent sessions is
not. Every finding carries its session's seed, index and the bytes it
sent. Traffic goes to 127.0.0.1 only; runs stop by themselves (time and
session count).

The server is configured so that the fuzzer's own failed logins cannot
lock the probe out: 127.0.0.0/8 is exempt from bans and the failure delay
is capped at 50 ms; the outbound relay's smart host is 127.0.0.1:1
(closed), so nothing is relayed off the machine.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import poplib
import random
import re
import smtplib
import socket
import ssl
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"
LISTENERS = ("pop3s", "pop3", "smtps", "submission", "mx")
IMPLICIT_TLS = frozenset({"pop3s", "smtps"})
POP_LISTENERS = frozenset({"pop3s", "pop3"})
DOMAIN = "example.test"
POP_HOST = f"pop.{DOMAIN}"
SMTP_HOST = f"smtp.{DOMAIN}"
PASSWORD = "fuzz password 1"
SENDER = f"alice@{DOMAIN}"  # submission logins and senders
PROBE = f"bob@{DOMAIN}"  # only the health checks use it
FUZZ_MAILBOXES = (f"carol@{DOMAIN}", f"dave@{DOMAIN}")  # fuzzed POP logins
DEFAULT_RSS_BOUND = 50 * 1024 * 1024
#: Over-long input without a line break: the server should close by then.
HUGE_LINE = 4 * 1024 * 1024

#: Settings merged over the harness defaults (see the module docstring).
SERVER_SETTINGS: dict[str, dict[str, str]] = {
    "auth": {
        "allow_networks": "127.0.0.0/8",
        "failure_delay": "0.01",
        "failure_delay_max": "0.05",
    },
    "outbound": {"smarthost": "127.0.0.1:1", "smarthost_tls": "may"},
}

LOG_MARKERS = ("Unhandled Error", "Traceback")
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\S+ \[", re.M)
#: Python internals that must never reach a client.
LEAK = re.compile(
    rb"Traceback|\b[A-Z][A-Za-z]*(?:Error|Exception)\b|builtins\.|File \"/"
)
MILESTONES = [
    ("login", re.compile(rb"^(?:\+OK Logged in|235 )", re.M)),
    ("accepted", re.compile(rb"^250 2\.0\.0 Message accepted", re.M)),
]
REPLY_LINE = re.compile(rb"^(?:\+OK|-ERR|\+ |\+$|\d{3}[ -]|\d{3}$)", re.M)


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


# -- interesting values -----------------------------------------------------

NUMBERS = [
    b"0",
    b"-1",
    b"1",
    b"2",
    b"3",
    b"-0",
    b"+1",
    b"1.5",
    b"1e9",
    b"0x10",
    b"abc",
    b"",
    b" ",
    b"4294967296",
    b"18446744073709551616",
    b"9" * 60,
    b"-99999999999",
    "\u0661".encode(),
    b"\xff\xfe",
    b"%s%n%x",
    b"1 2 3",
    b"\x00",
    b"00000000000000000001",
    b"2147483648",
    b"-2147483649",
]
ADDRESSES = [
    b"<>",
    b"<@a.test,@b.test:carol@example.test>",
    b"carol@example.test",
    b"<carol@EXAMPLE.TEST>",
    b'<"quoted local"@example.test>',
    b"<carol@example.test> SIZE=-1",
    b"<carol@example.test> SIZE=" + b"9" * 30,
    b"<carol@example.test> SIZE=abc",
    b"<carol@example.test> BODY=8BITMIME",
    b"<carol@example.test> BODY=BINARYMIME",
    b"<carol@example.test> SMTPUTF8",
    b"<carol@example.test> FOO=BAR",
    b"<postmaster>",
    b"<Postmaster>",
    b"<carol%remote.test@example.test>",
    b"<remote.test!carol@example.test>",
    b"<carol@[127.0.0.1]>",
    b"<" + b"a" * 300 + b"@example.test>",
    b"<carol@" + b"a." * 200 + b"test>",
    b"<carol@example.test",
    b"carol@example.test>",
    b"<<carol@example.test>>",
    "<\u00fc@example.test>".encode(),
    "<carol@ex\u00e4mple.test>".encode(),
    b"<carol@example.test> SIZE=1 SIZE=2",
    b"<nobody@example.test>",
    b"<x@remote.test>",
    b"<carol@example.test>\x00<x@remote.test>",
    b"<carol@example.test> RET=HDRS ENVID=x NOTIFY=NEVER",
]
SASL_GARBAGE = [
    b"*",
    b"=",
    b"",
    b"====",
    b"not base64!!",
    b"AGFsaWNl",
    b"A" * 3000,
    _b64(b"\x00\x00\x00"),
    _b64(b"alice@example.test"),
    _b64(b"\x00" * 500),
    _b64(b"authzid\x00alice@example.test\x00pw"),
    _b64(b"\x00alice@example.test\x00wrong"),
    _b64(b"x" * 8000),
    _b64(b"\x00\x00alice@example.test\x00" + PASSWORD.encode()),
    _b64("\x00\u00e4@example.test\x00\u00fc".encode()),
    b"YQ",
    b"YQ==YQ==",
    b" " + _b64(b"\x00a\x00b"),
    _b64(b"\x00a\x00b") + b" extra",
]
MECHANISMS = [
    b"PLAIN",
    b"LOGIN",
    b"plain",
    b"CRAM-MD5",
    b"XOAUTH2",
    b"GSSAPI",
    b"",
    b"PLAIN =",
    b"PLAIN *",
    b"LOGIN =",
    b"PLAIN " + b"A" * 500,
    b"PLAIN x y",
]
POP_WORDS = [
    b"USER",
    b"PASS",
    b"APOP",
    b"AUTH",
    b"STAT",
    b"LIST",
    b"UIDL",
    b"RETR",
    b"TOP",
    b"DELE",
    b"RSET",
    b"NOOP",
    b"QUIT",
    b"CAPA",
    b"STLS",
    b"LAST",
    b"XTND",
]
SMTP_WORDS = [
    b"HELO",
    b"EHLO",
    b"MAIL FROM:",
    b"RCPT TO:",
    b"DATA",
    b"BDAT",
    b"RSET",
    b"NOOP",
    b"VRFY",
    b"EXPN",
    b"HELP",
    b"QUIT",
    b"STARTTLS",
    b"AUTH",
    b"TURN",
    b"ETRN",
    b"XCLIENT",
    b"BURL",
]
#: SMTP commands after which a pipelining client waits (RFC 2920, 3207).
GROUP_ENDERS = frozenset(
    {b"HELO", b"EHLO", b"DATA", b"VRFY", b"EXPN", b"QUIT", b"NOOP", b"STARTTLS"}
)
TERMINATORS = [b"\n", b"\r", b"", b"\r\r\n", b"\n\r", b"\r\n\r\n", b"\x00\r\n"]
SMUGGLE = [
    b"\n.\n",
    b"\r.\n",
    b"\n.\r\n",
    b"\r.\r",
    b"\r\n.\n",
    b"\n.\r",
    b"\r\n.\r",
    b"\r\n.\x00\r\n",
    b"\r\n\x00.\r\n",
    b"\r\n .\r\n",
    b"\n..\n",
    b"\r\r\n.\r\r\n",
]
SNIS = [
    POP_HOST,
    f"poppro.{DOMAIN}",
    SMTP_HOST,
    None,
    "x" * 63 + "." + "y" * 63 + ".test",
    "127.0.0.1",
    "POP.EXAMPLE.TEST",
    f"unknown.{DOMAIN}",
]


# -- scripts ----------------------------------------------------------------


@dataclass
class Item:
    """One unit of a session: a line (``data`` + ``term``), raw bytes, or a
    TLS start (``kind`` "tls", ``data`` the variant)."""

    kind: str
    data: bytes = b""
    term: bytes = b"\r\n"
    wait: bool = True


def line(data: bytes, wait: bool = True) -> Item:
    """A protocol line ending in CRLF."""
    return Item("line", data, b"\r\n", wait)


def tls(variant: str = "full") -> Item:
    """Start TLS here (``full`` or one of the broken variants)."""
    return Item("tls", variant.encode())


@dataclass
class Script:
    """What one session sends: steps built from items, plus oracles."""

    seed: int
    index: int
    listener: str
    kind: str
    steps: list[tuple[Any, ...]]
    sni: str | None
    #: Oracles: "huge-line", "pipelined-data", "stls-injection", "smuggle".
    expect: set[str] = field(default_factory=set)
    marker: str = ""


class Generator:
    """Builds session ``index`` of a run with ``seed``, deterministically."""

    KINDS = [
        ("mutated", 46),
        ("valid", 8),
        ("random", 9),
        ("tls", 10),
        ("long", 6),
        ("sasl", 6),
        ("smuggle", 6),
        ("inject", 4),
        ("pipelined-data", 3),
        ("numbers", 2),
    ]

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def build(self, index: int, listener: str | None = None) -> Script:
        """Session ``index``; its listener rotates so each gets a fifth."""
        rng = random.Random(f"{self.seed}:{index}")
        listener = listener or LISTENERS[index % len(LISTENERS)]
        kinds, weights = zip(*self.KINDS, strict=True)
        kind = rng.choices(kinds, weights)[0]
        if kind == "smuggle" and listener in POP_LISTENERS:
            kind = "mutated"
        if kind == "inject" and listener in IMPLICIT_TLS:
            kind = "tls"
        if kind == "pipelined-data" and listener != "mx":
            kind = "valid"
        sni = (
            rng.choice(SNIS)
            if rng.random() < 0.2
            else (POP_HOST if listener in POP_LISTENERS else SMTP_HOST)
        )
        script = Script(self.seed, index, listener, kind, [], sni)
        script.marker = f"fuzz-{self.seed}-{index}"
        items = getattr(self, "_" + kind.replace("-", "_"))(rng, script)
        if script.steps:  # the kind built its own steps
            return script
        script.steps = self._steps(rng, items, listener, kind)
        return script

    # -- base sessions --

    def _pop_base(self, rng: random.Random, listener: str) -> list[Item]:
        items: list[Item] = []
        if listener == "pop3":
            items += [line(b"CAPA"), line(b"STLS"), tls()]
        user = rng.choice(FUZZ_MAILBOXES).encode()
        if rng.random() < 0.1:
            user = user.upper()
        password = PASSWORD.encode() if rng.random() < 0.85 else b"wrong"
        items.append(line(b"CAPA"))
        how = rng.choice(["user", "user", "plain", "plain2", "login", "login1"])
        if how == "user":
            items += [line(b"USER " + user), line(b"PASS " + password)]
        elif how == "plain":
            items.append(line(b"AUTH PLAIN " + _b64(b"\0" + user + b"\0" + password)))
        elif how == "plain2":
            items += [
                line(b"AUTH PLAIN"),
                line(_b64(user + b"\0" + user + b"\0" + password)),
            ]
        elif how == "login":
            items += [line(b"AUTH LOGIN"), line(_b64(user)), line(_b64(password))]
        else:
            items += [line(b"AUTH LOGIN " + _b64(user)), line(_b64(password))]

        def n() -> bytes:
            return str(rng.randint(1, 4)).encode()

        commands: list[Callable[[], bytes]] = [
            lambda: b"STAT",
            lambda: b"LIST",
            lambda: b"UIDL",
            lambda: b"LIST " + n(),
            lambda: b"UIDL " + n(),
            lambda: b"RETR " + n(),
            lambda: b"TOP " + n() + b" " + str(rng.randint(0, 5)).encode(),
            lambda: b"DELE " + n(),
            lambda: b"RSET",
            lambda: b"NOOP",
            lambda: b"CAPA",
            lambda: b"AUTH",
        ]
        for _ in range(rng.randint(1, 8)):
            items.append(line(rng.choice(commands)()))
        if rng.random() < 0.8:
            items.append(line(b"QUIT"))
        return items

    def _smtp_base(self, rng: random.Random, script: Script) -> list[Item]:
        listener = script.listener
        submission = listener in ("smtps", "submission")
        items = [line(b"EHLO client.fuzz" if rng.random() < 0.9 else b"HELO x")]
        if listener == "submission" or (listener == "mx" and rng.random() < 0.5):
            items += [line(b"STARTTLS"), tls(), line(b"EHLO client.fuzz")]
        if submission:
            user = SENDER.encode()
            password = PASSWORD.encode() if rng.random() < 0.85 else b"wrong"
            how = rng.choice(["plain", "plain2", "login", "login1"])
            if how == "plain":
                items.append(
                    line(b"AUTH PLAIN " + _b64(b"\0" + user + b"\0" + password))
                )
            elif how == "plain2":
                items += [
                    line(b"AUTH PLAIN"),
                    line(_b64(b"\0" + user + b"\0" + password)),
                ]
            elif how == "login":
                items += [line(b"AUTH LOGIN"), line(_b64(user)), line(_b64(password))]
            else:
                items += [line(b"AUTH LOGIN " + _b64(user)), line(_b64(password))]
        for _ in range(rng.choice([1, 1, 1, 2])):
            sender = SENDER if submission else f"someone{rng.randint(0, 9)}@remote.test"
            mail = b"MAIL FROM:<" + sender.encode() + b">"
            if rng.random() < 0.3:
                mail += rng.choice(
                    [b" SIZE=1000", b" BODY=8BITMIME", b" SIZE=10 BODY=7BIT"]
                )
            items.append(line(mail))
            for rcpt in rng.sample(FUZZ_MAILBOXES, rng.randint(1, 2)):
                items.append(line(b"RCPT TO:<" + rcpt.encode() + b">"))
            items.append(line(b"DATA"))
            items.append(Item("raw", self._message(rng, script, sender), b"", False))
            items.append(line(b"."))
        if rng.random() < 0.3:
            items.append(line(rng.choice([b"RSET", b"NOOP", b"VRFY carol", b"HELP"])))
        if rng.random() < 0.8:
            items.append(line(b"QUIT"))
        return items

    def _message(self, rng: random.Random, script: Script, sender: str) -> bytes:
        body = [
            f"From: <{sender}>".encode(),
            f"To: <{FUZZ_MAILBOXES[0]}>".encode(),
            f"Subject: {script.marker}".encode(),
            b"",
        ]
        for _ in range(rng.randint(0, 6)):
            body.append(
                rng.choice(
                    [
                        b"hello",
                        b".leading dot",
                        b"..two dots",
                        b"",
                        b"\xc3\xa4 8bit",
                        b"x" * rng.randint(0, 3000),
                        b"." * rng.randint(1, 3),
                    ]
                )
            )
        return b"".join(
            (b"." + part if part.startswith(b".") else part) + b"\r\n" for part in body
        )

    def _base(self, rng: random.Random, script: Script) -> list[Item]:
        if script.listener in POP_LISTENERS:
            return self._pop_base(rng, script.listener)
        return self._smtp_base(rng, script)

    # -- session kinds --

    def _valid(self, rng: random.Random, script: Script) -> list[Item]:
        items = self._base(rng, script)
        if rng.random() < 0.3:  # an abrupt close at a random point
            items = items[: rng.randint(1, len(items))]
        return items

    def _mutated(self, rng: random.Random, script: Script) -> list[Item]:
        items = self._base(rng, script)
        for _ in range(rng.choice([1, 1, 2, 2, 3, 4, 6])):
            self._mutate(rng, items, script.listener)
        if rng.random() < 0.3:
            items = items[: rng.randint(1, max(1, len(items)))]
        return items[:80]

    def _numbers(self, rng: random.Random, script: Script) -> list[Item]:
        items = self._base(rng, script)
        for item in items:
            if item.kind == "line" and rng.random() < 0.5:
                words = item.data.split(b" ")
                if len(words) > 1:
                    words[rng.randrange(1, len(words))] = rng.choice(NUMBERS)
                else:
                    words.append(rng.choice(NUMBERS))
                item.data = b" ".join(words)
        return items

    def _random(self, rng: random.Random, script: Script) -> list[Item]:
        items: list[Item] = []
        if script.listener in IMPLICIT_TLS and rng.random() < 0.5:
            items.append(tls())
        for _ in range(rng.randint(1, 12)):
            items.append(
                Item(
                    "raw",
                    self._noise(rng, rng.randint(0, 2000)),
                    b"",
                    rng.random() < 0.5,
                )
            )
        return items

    def _noise(self, rng: random.Random, n: int) -> bytes:
        style = rng.randrange(5)
        if style == 0:
            return rng.randbytes(n)
        if style == 1:
            return bytes(rng.randrange(32, 127) for _ in range(n))
        if style == 2:
            return bytes(
                rng.choice(b"\r\n\x00\t\x0b\x0c\x1b\x7f .\x80\xff:<>") for _ in range(n)
            )
        if style == 3:
            return bytes(rng.randrange(128, 256) for _ in range(n))
        words = POP_WORDS + SMTP_WORDS + NUMBERS + ADDRESSES + TERMINATORS
        out = b""
        while len(out) < n:
            out += rng.choice(words) + rng.choice([b" ", b"\r\n", b"", b"\n"])
        return out[: max(n, 1)]

    def _tls(self, rng: random.Random, script: Script) -> list[Item]:
        variant = rng.choice(
            [
                "half",
                "hello-only",
                "mutated",
                "garbage-after",
                "plaintext",
                "record-huge",
                "sslv2",
                "close-after-full",
                "garbage",
            ]
        )
        if script.listener in IMPLICIT_TLS:
            items = [tls(variant)]
            if variant in ("plaintext", "garbage-after"):
                items += self._base(rng, script)[1:6]
            return items
        items = self._base(rng, script)
        if not any(item.kind == "tls" for item in items):
            items[1:1] = [line(b"STARTTLS"), tls()]
        at = next(i for i, item in enumerate(items) if item.kind == "tls")
        items[at] = tls(variant)
        if variant not in ("plaintext",):
            items = items[: at + 1] + items[at + 1 : at + 4]
        return items

    def _long(self, rng: random.Random, script: Script) -> list[Item]:
        items = self._base(rng, script)
        keep = rng.randint(0, len(items))
        # Skip past a TLS start: the long line goes where commands are read.
        tls_at = [i for i, item in enumerate(items) if item.kind == "tls"]
        if tls_at and keep <= tls_at[-1]:
            keep = tls_at[-1] + 1
        prefix = items[:keep]
        if keep > 0 and any(it.data == b"DATA" for it in prefix):
            prefix = [it for it in prefix if it.data != b"DATA"]
        choice = rng.random()
        if choice < 0.3:  # a huge line without a line break: must be closed
            script.expect.add("huge-line")
            word = rng.choice([b"NOOP ", b"", b"AUTH PLAIN ", b"RCPT TO:<"])
            return [*prefix, Item("huge", word, b"", False)]
        if choice < 0.6:  # several over-long lines
            n = rng.randint(1, 5)
            length = rng.choice([2049, 2050, 4096, 8000, 65536])
            for _ in range(n):
                prefix.append(
                    Item(
                        "line",
                        rng.choice([b"NOOP ", b"USER ", b"MAIL FROM:<"])
                        + b"A" * length,
                        rng.choice([b"\r\n", b"\n"]),
                    )
                )
            return prefix + items[keep : keep + 3]
        # lines right at the limit
        for length in (2046, 2047, 2048, 2049):
            prefix.append(line(b"NOOP " + b"B" * (length - 5)))
        return prefix + items[keep : keep + 3]

    def _sasl(self, rng: random.Random, script: Script) -> list[Item]:
        items = self._base(rng, script)
        out: list[Item] = []
        for item in items:
            if item.kind == "line" and item.data.upper().startswith(b"AUTH"):
                mech = rng.choice(MECHANISMS)
                out.append(line(b"AUTH " + mech))
                for _ in range(rng.randint(1, 3)):
                    out.append(line(rng.choice(SASL_GARBAGE)))
                if rng.random() < 0.5:
                    out.append(line(b"AUTH " + mech + b" " + rng.choice(SASL_GARBAGE)))
                continue
            out.append(item)
        return out

    def _smuggle(self, rng: random.Random, script: Script) -> list[Item]:
        items = self._base(rng, script)
        script.expect.add("smuggle")
        inner_sender = SENDER if script.listener != "mx" else "evil@remote.test"
        smuggled = (
            b"MAIL FROM:<" + inner_sender.encode() + b">\r\n"
            b"RCPT TO:<" + FUZZ_MAILBOXES[1].encode() + b">\r\nDATA\r\n"
            b"From: <" + inner_sender.encode() + b">\r\n"
            b"Subject: smuggled-" + script.marker.encode() + b"\r\n\r\nsmuggled\r\n"
        )
        for i, item in enumerate(items):
            if item.kind == "raw":
                sep = rng.choice(SMUGGLE)
                items[i] = Item(
                    "raw", item.data + b"before" + sep + smuggled, b"", False
                )
        return items

    def _inject(self, rng: random.Random, script: Script) -> list[Item]:
        """STLS/STARTTLS with plaintext commands pipelined after it."""
        script.expect.add("stls-injection")
        injected = rng.choice(
            [
                b"CAPA\r\n",
                b"NOOP\r\n",
                b"USER carol@example.test\r\n",
                b"MAIL FROM:<x@remote.test>\r\n",
                b"EHLO evil\r\n",
                b"RSET\r\nNOOP\r\n",
                b"HELP\r\n",
            ]
        )
        word = b"STLS" if script.listener == "pop3" else b"STARTTLS"
        opening = b"CAPA\r\n" if script.listener == "pop3" else b"EHLO client.fuzz\r\n"
        script.steps = [
            ("greeting",),
            ("send", opening),
            ("recv", 0.5),
            ("send", word + b"\r\n" + injected),
            ("reply", 1.0),
            ("tls", script.sni, "full"),
            ("quiet", 0.4),
            ("close", "fin"),
        ]
        return []

    def _pipelined_data(self, rng: random.Random, script: Script) -> list[Item]:
        """A whole MX transaction sent before the server's 354."""
        script.expect.add("pipelined-data")
        sender = b"someone@remote.test"
        message = self._message(rng, script, sender.decode())
        burst = (
            b"EHLO client.fuzz\r\nMAIL FROM:<"
            + sender
            + b">\r\nRCPT TO:<"
            + FUZZ_MAILBOXES[0].encode()
            + b">\r\nDATA\r\n"
            + message
            + b".\r\nQUIT\r\n"
        )
        script.steps = [
            ("greeting",),
            ("send", burst),
            ("drain", 2.0),
            ("close", "fin"),
        ]
        return []

    # -- mutations --

    def _mutate(self, rng: random.Random, items: list[Item], listener: str) -> None:
        lines = [i for i, item in enumerate(items) if item.kind in ("line", "raw")]
        if not lines:
            return
        at = rng.choice(lines)
        item = items[at]
        op = rng.randrange(16)
        words = POP_WORDS if listener in POP_LISTENERS else SMTP_WORDS
        if op == 0:
            item.data = self._noise(rng, rng.randint(0, 300))
        elif op == 1:
            items.insert(at, line(self._noise(rng, rng.randint(0, 100))))
        elif op == 2:
            del items[at]
        elif op == 3:  # a pipelined burst of one command
            items[at : at + 1] = [
                Item(item.kind, item.data, item.term, False)
                for _ in range(rng.randint(2, 60))
            ]
        elif op == 4 and len(lines) > 1:
            other = rng.choice(lines)
            items[at], items[other] = items[other], items[at]
        elif op == 5:
            item.data = item.data[: rng.randint(0, len(item.data))]
        elif op == 6:
            pos = rng.randint(0, len(item.data))
            item.data = (
                item.data[:pos]
                + rng.choice(
                    [b"\x00", b"\r", b"\n", b"\r\n", b"\x1b", b"\x7f", b"\xff", b"\t"]
                )
                + item.data[pos:]
            )
        elif op == 7:
            item.term = rng.choice(TERMINATORS)
        elif op == 8:
            parts = item.data.split(b" ")
            if len(parts) > 1:
                parts[rng.randrange(1, len(parts))] = rng.choice(NUMBERS + ADDRESSES)
            else:
                parts.append(rng.choice(NUMBERS + ADDRESSES))
            item.data = b" ".join(parts)
        elif op == 9:
            item.data = (
                item.data.lower() if rng.random() < 0.5 else item.data.swapcase()
            )
        elif op == 10:
            item.data = item.data + b" " + b"Z" * rng.randint(2000, 20000)
        elif op == 11:
            pos = rng.randint(0, len(item.data))
            item.data = (
                item.data[:pos]
                + rng.choice(
                    [
                        b"\xc3\x28",
                        b"\xe2\x82",
                        "\u202e".encode(),
                        b"\xf0\x9f\x92\xa9",
                        b"\xed\xa0\x80",
                    ]
                )
                + item.data[pos:]
            )
        elif op == 12 and item.data:
            data = bytearray(item.data)
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            item.data = bytes(data)
        elif op == 13:
            items.insert(at, line(rng.choice(SASL_GARBAGE)))
        elif op == 14:
            items.insert(
                at, line(rng.choice(words) + b" " + rng.choice(NUMBERS + ADDRESSES))
            )
        else:  # a random extra verb, possibly out of order
            items.insert(at, line(rng.choice(words)))

    # -- items to steps --

    def _steps(
        self, rng: random.Random, items: list[Item], listener: str, kind: str
    ) -> list[tuple[Any, ...]]:
        mode = rng.choices(["lockstep", "burst", "fragments"], [45, 35, 20])[0]
        steps: list[tuple[Any, ...]] = []
        greet = True
        if listener in IMPLICIT_TLS:
            if items and items[0].kind == "tls":
                first = items.pop(0)
                steps.append(("tls", None, first.data.decode()))
                greet = first.data == b"full"
            elif kind != "random":
                steps.append(("tls", None, "full"))
            else:
                greet = False  # plaintext on a TLS port: no greeting comes
        if greet:
            steps.append(("greeting",))
        pending = b""
        # Mostly wait where RFC 2920 says a pipelined group must end (an
        # unauthenticated client that does not is closed), so bursts get
        # past EHLO; sometimes not, to fuzz that check too.
        sync = listener not in POP_LISTENERS and rng.random() < 0.8

        def flush() -> None:
            nonlocal pending
            if not pending:
                return
            if mode == "fragments":
                pos = 0
                while pos < len(pending):
                    size = rng.choice([1, 1, 2, 3, 7, 16, 100])
                    steps.append(("send", pending[pos : pos + size]))
                    pos += size
            else:
                steps.append(("send", pending))
            steps.append(("recv", 0.3))
            pending = b""

        for item in items:
            if item.kind == "tls":
                flush()
                steps.append(("tls", None, item.data.decode()))
                if item.data != b"full" and item.data != b"plaintext":
                    break
                continue
            if item.kind == "huge":
                flush()
                steps.append(("huge", item.data, HUGE_LINE))
                break
            pending += item.data + item.term
            if mode == "lockstep" and item.wait:
                flush()
            elif sync and item.kind == "line" and item.wait and item.term == b"\r\n":
                if item.data.split(b" ", 1)[0].upper() in GROUP_ENDERS:
                    flush()
        flush()
        steps.append(("recv", 0.2))
        steps.append(("close", rng.choice(["fin", "fin", "rst", "shut"])))
        # The greeting and TLS step's SNI: filled in by the caller.
        return steps


# -- running sessions -------------------------------------------------------


@dataclass
class Outcome:
    """What one session did and saw."""

    listener: str
    kind: str
    index: int
    sent: int = 0
    received: int = 0
    replies: int = 0
    #: How deep it got: "tls", "login", "accepted" (each at most once).
    milestones: set[str] = field(default_factory=set)
    events: list[str] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    transcript: list[bytes] = field(default_factory=list)
    reply_text: bytes = b""


def _client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Session:
    """Runs one ``Script`` against ``port`` with blocking sockets."""

    TRANSCRIPT_LIMIT = 64 * 1024

    def __init__(self, script: Script, port: int, deadline: float = 8.0) -> None:
        self.script = script
        self.port = port
        self.deadline = time.monotonic() + deadline
        self.out = Outcome(script.listener, script.kind, script.index)
        self.sock: Any = None
        self.closed_by_server = False
        self.rng = random.Random(f"{script.seed}:{script.index}:run")
        self._logged = 0

    def run(self) -> Outcome:
        """Connect, run every step, close; never raises."""
        try:
            self.sock = socket.create_connection((HOST, self.port), timeout=2.0)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for step in self.script.steps:
                if time.monotonic() > self.deadline:
                    self.out.events.append("deadline")
                    break
                if not getattr(self, "_" + step[0])(*step[1:]):
                    break
        except ConnectionRefusedError:
            self.out.events.append("refused")
            self.out.findings.append(
                self._finding(
                    "connection refused", "the listener refused a TCP connection"
                )
            )
        except (OSError, ssl.SSLError, ValueError) as e:
            self.out.events.append(type(e).__name__)
        finally:
            self._abort()
        self.out.replies = len(REPLY_LINE.findall(self.out.reply_text))
        for name, pattern in MILESTONES:
            if pattern.search(self.out.reply_text):
                self.out.milestones.add(name)
        leak = LEAK.search(self.out.reply_text)
        if leak is not None:
            self.out.findings.append(
                self._finding(
                    "python internals in a reply",
                    "reply shows " + leak.group(0).decode("latin-1"),
                )
            )
        self._judge()
        self.out.reply_text = self.out.reply_text[-4096:]
        return self.out

    def _finding(self, what: str, detail: str) -> dict[str, Any]:
        return {
            "kind": "oracle",
            "what": what,
            "listener": self.script.listener,
            "session": f"{self.script.seed}:{self.script.index}",
            "session_kind": self.script.kind,
            "detail": detail,
        }

    # -- I/O helpers --

    def _write(self, data: bytes) -> None:
        if self._logged < self.TRANSCRIPT_LIMIT:
            self.out.transcript.append(data[: self.TRANSCRIPT_LIMIT - self._logged])
            self._logged += len(data)
        self.sock.settimeout(3.0)
        self.sock.sendall(data)
        self.out.sent += len(data)

    def _read(
        self, timeout: float, until: Callable[[bytes], bool] | None = None
    ) -> bytes:
        """What arrives within ``timeout`` (returns early once ``until`` is
        true of it, or after a short quiet spell following data)."""
        got = b""
        end = min(time.monotonic() + timeout, self.deadline)
        while not self.closed_by_server:
            left = end - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left if not got else min(left, 0.02))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                if got:
                    break
                continue
            except ssl.SSLWantReadError:
                continue
            except (ConnectionResetError, ssl.SSLError) as e:
                self.out.events.append(f"recv:{type(e).__name__}")
                self.closed_by_server = True
                break
            if not chunk:
                self.closed_by_server = True
                break
            got += chunk
            if until is not None and until(got):
                break
        self.out.received += len(got)
        self.out.reply_text = (self.out.reply_text + got)[-256 * 1024 :]
        return got

    # -- steps (each returns False to end the session) --

    def _greeting(self) -> bool:
        self._read(1.0, lambda b: b.endswith(b"\r\n"))
        return not self.closed_by_server

    def _send(self, data: bytes) -> bool:
        try:
            self._write(data)
        except TimeoutError:
            self.out.events.append("send-blocked")
            return False
        except (OSError, ssl.SSLError):
            self.closed_by_server = True
            self.out.events.append("closed-while-sending")
            return False
        return True

    def _recv(self, timeout: float) -> bool:
        self._read(timeout)
        return not self.closed_by_server

    def _reply(self, timeout: float) -> bool:
        """Until a whole reply line is in (the STLS/STARTTLS answer)."""
        self._read(timeout, lambda b: b.endswith(b"\r\n"))
        return not self.closed_by_server

    def _drain(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not self.closed_by_server and time.monotonic() < end:
            self._read(end - time.monotonic())
        return False

    def _quiet(self, timeout: float) -> bool:
        """Nothing may arrive now: a reply here answers a command that was
        pipelined before TLS (STARTTLS/STLS command injection)."""
        got = self._read(timeout)
        if got and "stls-injection" in self.script.expect:
            self.out.findings.append(
                self._finding(
                    "command pipelined before TLS answered inside TLS",
                    f"unsolicited reply after the handshake: {got[:200]!r}",
                )
            )
        return not self.closed_by_server

    def _huge(self, prefix: bytes, total: int) -> bool:
        """``total`` bytes with no line break; the server should close."""
        chunk = b"A" * 65536
        sent = 0
        try:
            self._write(prefix)
            while sent < total and time.monotonic() < self.deadline:
                self.sock.sendall(chunk)
                sent += len(chunk)
                self.out.sent += len(chunk)
        except TimeoutError:
            self.out.events.append("send-blocked")
        except (OSError, ssl.SSLError):
            self.closed_by_server = True
        self.out.transcript.append(f"<{sent} x 'A'>".encode())
        if not self.closed_by_server:
            self._read(3.0)
        if not self.closed_by_server:
            self._read(2.0)
        if not self.closed_by_server:
            self.out.findings.append(
                self._finding(
                    "no close on a huge line without a line break",
                    f"{total} bytes of 'A' after {prefix!r} with no CR/LF: the"
                    " connection was still open 5 s later",
                )
            )
        return False

    def _close(self, how: str) -> bool:
        try:
            if how == "shut":
                self.sock.shutdown(socket.SHUT_WR)
                self._read(0.3)
            elif how == "rst":
                # SO_LINGER with a zero timeout: close() sends a RST.
                self.sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0"
                )
        except (OSError, ssl.SSLError, ValueError):
            pass
        return False

    def _abort(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass

    def _tls(self, sni: str | None, variant: str) -> bool:
        sni = sni or self.script.sni
        ctx = _client_context()
        if (
            variant == "full"
            or variant == "close-after-full"
            or variant == "garbage-after"
        ):
            # wrap_socket detaches the plain socket: from here on only the
            # TLS socket owns the descriptor.
            self.sock = ctx.wrap_socket(
                self.sock, server_hostname=sni, do_handshake_on_connect=False
            )
            self.sock.settimeout(1.5)
            try:
                self.sock.do_handshake()
            except (ssl.SSLError, OSError) as e:
                self.out.events.append(f"handshake:{type(e).__name__}")
                return False
            self.out.milestones.add("tls")
            if variant == "close-after-full":
                return False
            if variant == "garbage-after":
                # Bytes outside TLS records on a TLS connection.
                garbage = self.rng.randbytes(self.rng.randint(1, 600))
                self.out.transcript.append(b"<raw, outside TLS>" + garbage)
                try:
                    socket.socket.sendall(self.sock, garbage)
                    self.out.sent += len(garbage)
                    self._read(0.3)
                except (OSError, ssl.SSLError):
                    pass
                return False
            return True
        if variant == "plaintext":
            return True
        hello = self._client_hello(ctx, sni)
        if variant == "half":
            data = hello[: self.rng.randint(1, len(hello) - 1)]
        elif variant == "hello-only":
            data = hello
        elif variant == "mutated":
            buf = bytearray(hello)
            for _ in range(self.rng.randint(1, 8)):
                buf[self.rng.randrange(len(buf))] = self.rng.randrange(256)
            data = bytes(buf)
        elif variant == "record-huge":
            data = b"\x16\x03\x01\xff\xff" + hello[5:]
        elif variant == "sslv2":
            data = bytes.fromhex(
                "802e0100020015000000100100800700c00300800600400500800400"
            )
            data += self.rng.randbytes(16)
        else:  # garbage
            data = self.rng.randbytes(self.rng.randint(1, 3000))
        self._send(data)
        self._read(0.4)
        return False

    @staticmethod
    def _client_hello(ctx: ssl.SSLContext, sni: str | None) -> bytes:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return outgoing.read()

    # -- per-session oracles --

    def _judge(self) -> None:
        text = self.out.reply_text
        if "pipelined-data" in self.script.expect:
            after = text.partition(b"\r\n354 ")[2]
            if re.search(rb"^250 2\.0\.0", after, re.M):
                self.out.findings.append(
                    self._finding(
                        "MX accepted a message pipelined across DATA",
                        "EHLO, MAIL, RCPT, DATA, the message and '.' in one write"
                        " before 354: the message was accepted (250 after 354),"
                        " without authentication",
                    )
                )


# -- health checks ----------------------------------------------------------


class _POP3(poplib.POP3_SSL):
    """poplib over implicit TLS to 127.0.0.1, checking pop.example.test."""

    context: ssl.SSLContext

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        super().__init__(POP_HOST, port, context=context, timeout=20)

    def _create_socket(self, timeout: float) -> ssl.SSLSocket:  # type: ignore[override]
        sock = socket.create_connection((HOST, self.port), timeout)
        return self.context.wrap_socket(sock, server_hostname=self.host)

    def _getline(self) -> tuple[bytes, int]:
        # poplib refuses lines over 2048 octets; fuzzed messages have them.
        got = self.file.readline(64 * 1024 * 1024)
        if not got:
            raise poplib.error_proto("-ERR EOF")
        if got.endswith(b"\r\n"):
            return got[:-2], len(got)
        return got.rstrip(b"\n"), len(got)


class _SMTPS(smtplib.SMTP_SSL):
    """smtplib over implicit TLS to 127.0.0.1, checking smtp.example.test."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        super().__init__(
            SMTP_HOST, port, local_hostname="probe.test", timeout=20, context=context
        )

    def _get_socket(self, host: str, port: int, timeout: float) -> ssl.SSLSocket:  # type: ignore[override]
        sock = socket.create_connection((HOST, port), timeout)
        return self.context.wrap_socket(sock, server_hostname=SMTP_HOST)


def _subjects(messages: Iterable[bytes]) -> list[str]:
    found = []
    for message in messages:
        header = message.split(b"\r\n\r\n", 1)[0]
        for m in re.finditer(rb"^Subject: ?(.*)$", header, re.M | re.I):
            found.append(m.group(1).decode("utf-8", "replace").strip())
    return found


def pop_drain(
    port: int, context: ssl.SSLContext, address: str, wait_in_use: float = 0.0
) -> list[bytes]:
    """Log in as ``address`` over POP3S: STAT, RETR and DELE every message,
    QUIT; the messages. Retries [IN-USE] for ``wait_in_use`` seconds."""
    end = time.monotonic() + wait_in_use
    while True:
        pop = _POP3(port, context)
        try:
            pop.user(address)
            try:
                pop.pass_(PASSWORD)
            except poplib.error_proto as e:
                if b"IN-USE" in e.args[0] and time.monotonic() < end:
                    time.sleep(0.2)
                    continue
                raise
            count, _ = pop.stat()
            messages = []
            for i in range(1, count + 1):
                messages.append(b"\r\n".join(pop.retr(i)[1]))
                pop.dele(i)
            pop.quit()
            return messages
        finally:
            pop.close()


def rss_bytes(pid: int) -> int:
    """VmRSS of ``pid`` from /proc/PID/status, in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for text in f:
            if text.startswith("VmRSS:"):
                return int(text.split()[1]) * 1024
    raise ValueError(f"no VmRSS for {pid}")


@dataclass
class LogError:
    """One error record of the server's log."""

    signature: str
    first: str
    text: str


def log_errors(text: str) -> list[LogError]:
    """The records of ``text`` with "Unhandled Error" or "Traceback"."""
    starts = [m.start() for m in LOG_RECORD.finditer(text)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    found = []
    for a, b in zip(starts, [*starts[1:], len(text)], strict=True):
        record = text[a:b]
        if not any(marker in record for marker in LOG_MARKERS):
            continue
        lines = [x.strip() for x in record.strip().splitlines() if x.strip()]
        last = lines[-1] if lines else record
        where = [x for x in lines if x.startswith("File ")]
        ours = [x for x in where if "/zpop/" in x and "/site-packages/" not in x]
        sig = re.sub(r"0x[0-9a-f]+", "0x?", last)
        if where:
            # The innermost zpop frame names the code at fault; line
            # numbers are left out so edits do not split one error in two.
            frame = re.sub(r", line \d+", "", (ours or where)[-1])
            sig += " @ " + frame.removeprefix("File ")
        found.append(LogError(sig, lines[0] if lines else "", record[:6000]))
    return found


# -- the fuzzer -------------------------------------------------------------


@dataclass
class Report:
    """The result of a run: figures, checks and findings."""

    seed: int
    started: str = ""
    duration: float = 0.0
    sessions: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    bytes_sent: Counter[str] = field(default_factory=Counter)
    bytes_received: Counter[str] = field(default_factory=Counter)
    replies: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    milestones: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    checks_passed: Counter[str] = field(default_factory=Counter)
    checks_failed: Counter[str] = field(default_factory=Counter)
    health_failures: list[str] = field(default_factory=list)
    rss_start: int = 0
    rss_max: int = 0
    rss_end: int = 0
    rss_bound: int = DEFAULT_RSS_BOUND
    log_errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    findings: dict[str, dict[str, Any]] = field(default_factory=dict)
    stopped: str = ""

    @property
    def rss_growth(self) -> int:
        """Largest RSS seen after warm-up minus the RSS after warm-up."""
        return self.rss_max - self.rss_start

    @property
    def total_sessions(self) -> int:
        """Sessions sent, all listeners."""
        return sum(self.sessions.values())

    def ok(self) -> bool:
        """Whether all three checks held throughout."""
        return (
            not self.health_failures
            and self.rss_growth < self.rss_bound
            and not self.log_errors
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "seed": self.seed,
            "started": self.started,
            "duration_s": round(self.duration, 1),
            "sessions": dict(self.sessions),
            "total_sessions": self.total_sessions,
            "kinds": dict(self.kinds),
            "bytes_sent": dict(self.bytes_sent),
            "bytes_received": dict(self.bytes_received),
            "replies": dict(self.replies),
            "milestones": dict(self.milestones),
            "events": dict(self.events),
            "batches": self.batches,
            "checks_passed": dict(self.checks_passed),
            "checks_failed": dict(self.checks_failed),
            "health_failures": self.health_failures[:20],
            "rss_start": self.rss_start,
            "rss_max": self.rss_max,
            "rss_end": self.rss_end,
            "rss_growth": self.rss_growth,
            "rss_bound": self.rss_bound,
            "log_errors": self.log_errors,
            "findings": self.findings,
            "stopped": self.stopped,
            "ok": self.ok(),
        }

    def summary(self) -> str:
        """A human-readable summary."""
        mib = 1024 * 1024
        out = [
            f"zpop fuzz: seed {self.seed}, started {self.started},"
            f" {self.duration:.1f} s, {self.batches} batches, stopped: {self.stopped}",
            f"{'listener':<11} {'sessions':>8} {'bytes sent':>12} {'bytes recv':>11}"
            f" {'replies':>8} {'TLS up':>7} {'logins':>7} {'accepted':>8}",
        ]
        m = self.milestones
        for name in LISTENERS:
            out.append(
                f"{name:<11} {self.sessions[name]:>8} {self.bytes_sent[name]:>12}"
                f" {self.bytes_received[name]:>11} {self.replies[name]:>8}"
                f" {m[name + ' tls']:>7} {m[name + ' login']:>7}"
                f" {m[name + ' accepted']:>8}"
            )

        def total(kind: str) -> int:
            return sum(v for k, v in m.items() if k.endswith(" " + kind))

        out.append(
            f"{'total':<11} {self.total_sessions:>8}"
            f" {sum(self.bytes_sent.values()):>12}"
            f" {sum(self.bytes_received.values()):>11}"
            f" {sum(self.replies.values()):>8} {total('tls'):>7}"
            f" {total('login'):>7} {total('accepted'):>8}"
        )
        out.append(
            "session kinds: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.kinds.items()))
        )
        out.append(
            "client-side events: "
            + (", ".join(f"{k} {v}" for k, v in self.events.most_common()) or "none")
        )
        out.append(
            "checks passed: "
            + ", ".join(
                f"{k} {self.checks_passed[k]}/"
                f"{self.checks_passed[k] + self.checks_failed[k]}"
                for k in ("health", "rss", "log")
            )
        )
        out.append(
            f"RSS: {self.rss_start / mib:.1f} MiB after warm-up, max"
            f" {self.rss_max / mib:.1f} MiB, end {self.rss_end / mib:.1f} MiB,"
            f" growth {self.rss_growth / mib:.1f} MiB (bound"
            f" {self.rss_bound / mib:.0f} MiB)"
        )
        for failure in self.health_failures[:5]:
            out.append(f"HEALTH FAILURE: {failure}")
        for sig, info in self.log_errors.items():
            out.append(
                f"LOG ERROR x{info['count']} (first in batch {info['batch']}): {sig}"
            )
            if info.get("repro"):
                out.append(
                    f"  reproduced by session {info['repro']['session']}"
                    f" on {info['repro']['listener']}"
                    f" ({info['repro']['session_kind']}):"
                    f" {info['repro']['sent'][:600]}"
                )
            else:
                out.append("  (no single session reproduced it on replay)")
        for key, info in self.findings.items():
            out.append(f"FINDING x{info['count']}: {key}")
            out.append(
                f"  e.g. session {info['session']} ({info['session_kind']}):"
                f" {info['detail'][:300]}"
            )
            out.append(f"  sent: {info['sent'][:600]}")
        if not self.log_errors and not self.findings and not self.health_failures:
            out.append("nothing found")
        out.append("RESULT: " + ("all checks passed" if self.ok() else "CHECKS FAILED"))
        return "\n".join(out)


def transcript_text(chunks: list[bytes], limit: int = 4000) -> str:
    """The bytes a session sent, as a Python bytes literal (shortened)."""
    data = b"".join(chunks)
    text = repr(data)
    if len(text) > limit:
        text = text[: limit // 2] + f" ...<{len(data)} bytes>... " + text[-limit // 2 :]
    return text


class Fuzzer:
    """Fuzzes one running server; see ``run``.

    ``server`` is a ``zpop.test.harness.ZpopServer`` (anything with
    ``ports``, ``process.pid``, ``log_path`` and ``ssl_context()``),
    prepared with ``prepare``.
    """

    def __init__(
        self,
        server: Any,
        seed: int,
        concurrency: int = 4,
        batch_size: int = 40,
        rss_bound: int = DEFAULT_RSS_BOUND,
        replay: bool = True,
        out: Callable[[str], None] | None = None,
    ) -> None:
        self.server = server
        self.seed = seed
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.replay = replay
        self.out = out or (lambda text: None)
        self.generator = Generator(seed)
        self.report = Report(seed=seed, rss_bound=rss_bound)
        self._log_offset = 0
        self._lock = threading.Lock()
        self._probe_context = server.ssl_context()

    # -- the checks --

    def _new_log(self) -> str:
        with open(self.server.log_path, "rb") as f:
            f.seek(self._log_offset)
            data = f.read()
        # Only whole lines: a record being written is read next time.
        cut = data.rfind(b"\n") + 1
        self._log_offset += cut
        return data[:cut].decode("utf-8", "replace")

    def health(self, batch: int) -> str | None:
        """Check (a): submission (587 or 465) and MX deliveries to the probe
        account, then POP3S login, STAT, RETR, DELE, QUIT seeing both.
        None if it passed, else what failed."""
        tag = f"probe-{self.seed}-{batch}-{uuid.uuid4().hex[:8]}"
        message = (
            f"From: <{SENDER}>\r\nTo: <{PROBE}>\r\nSubject: {tag}-sub\r\n\r\nprobe\r\n"
        )
        step = "submission"
        try:
            if batch % 2 == 0:
                client: smtplib.SMTP = smtplib.SMTP(
                    HOST,
                    self.server.ports["submission"],
                    local_hostname="probe.test",
                    timeout=20,
                )
                client._host = SMTP_HOST  # type: ignore[attr-defined]
                client.ehlo()
                client.starttls(context=self._probe_context)
                client.ehlo()
            else:
                step = "smtps"
                client = _SMTPS(self.server.ports["smtps"], self._probe_context)
            client.login(SENDER, PASSWORD)
            refused = client.sendmail(SENDER, [PROBE], message)
            client.quit()
            if refused:
                return f"{step}: refused {refused}"
            step = "mx"
            mx = smtplib.SMTP(
                HOST, self.server.ports["mx"], local_hostname="probe.test", timeout=20
            )
            refused = mx.sendmail(
                "probe@remote.test",
                [PROBE],
                message.replace(f"{tag}-sub", f"{tag}-mx").replace(
                    SENDER, "probe@remote.test"
                ),
            )
            mx.quit()
            if refused:
                return f"mx: refused {refused}"
            step = "pop3s"
            subjects = _subjects(
                pop_drain(self.server.ports["pop3s"], self._probe_context, PROBE)
            )
            missing = {f"{tag}-sub", f"{tag}-mx"} - set(subjects)
            if missing:
                return (
                    f"pop3s: delivered messages not in the mailbox: {sorted(missing)}"
                )
        except (OSError, smtplib.SMTPException, poplib.error_proto, ssl.SSLError) as e:
            return f"{step}: {type(e).__name__}: {e}"
        return None

    def _drain_fuzz_mailboxes(self) -> None:
        """Empty the fuzzed mailboxes; look there for smuggled messages."""
        for address in FUZZ_MAILBOXES:
            try:
                messages = pop_drain(
                    self.server.ports["pop3s"],
                    self._probe_context,
                    address,
                    wait_in_use=10.0,
                )
            except (OSError, poplib.error_proto, ssl.SSLError) as e:
                self._found(
                    {
                        "kind": "oracle",
                        "what": "fuzzed mailbox unreadable after a batch",
                        "listener": "pop3s",
                        "session": "-",
                        "session_kind": "drain",
                        "detail": f"{address}: {type(e).__name__}: {e}"
                        " (10 s after every fuzz connection was closed)",
                    },
                    b"",
                )
                continue
            for subject in _subjects(messages):
                if subject.startswith("smuggled-"):
                    self._found(
                        {
                            "kind": "oracle",
                            "what": "SMTP smuggling: one DATA became two messages",
                            "listener": "smtp",
                            "session": subject.removeprefix("smuggled-fuzz-").replace(
                                "-", ":"
                            ),
                            "session_kind": "smuggle",
                            "detail": f"{address} got a message with"
                            f" Subject: {subject}",
                        },
                        b"",
                    )

    def _found(self, finding: dict[str, Any], sent: bytes | str) -> None:
        key = f"{finding['what']} [{finding['listener']}]"
        with self._lock:
            known = self.report.findings.get(key)
            if known is None:
                self.report.findings[key] = {
                    **finding,
                    "count": 1,
                    "sent": sent if isinstance(sent, str) else transcript_text([sent]),
                }
            else:
                known["count"] += 1

    # -- running --

    def session(self, index: int) -> Outcome:
        """Build and run session ``index``."""
        script = self.generator.build(index)
        return Session(script, self.server.ports[script.listener]).run()

    def _account(self, outcome: Outcome) -> None:
        r = self.report
        r.sessions[outcome.listener] += 1
        r.kinds[outcome.kind] += 1
        r.bytes_sent[outcome.listener] += outcome.sent
        r.bytes_received[outcome.listener] += outcome.received
        r.replies[outcome.listener] += outcome.replies
        for milestone in outcome.milestones:
            r.milestones[f"{outcome.listener} {milestone}"] += 1
        for event in outcome.events:
            r.events[event.split(":")[0]] += 1
        for finding in outcome.findings:
            self._found(finding, transcript_text(outcome.transcript))

    def _check(self, batch: int, outcomes: list[Outcome]) -> None:
        r = self.report
        failure = self.health(batch)
        if failure is None:
            r.checks_passed["health"] += 1
        else:
            r.checks_failed["health"] += 1
            r.health_failures.append(f"batch {batch}: {failure}")
            self.out(f"batch {batch}: health check failed: {failure}")
        if batch > 0:
            self._drain_fuzz_mailboxes()
        rss = rss_bytes(self.server.process.pid)
        if batch == 0:
            r.rss_start = rss
        r.rss_end = rss
        r.rss_max = max(r.rss_max, rss)
        if r.rss_max - r.rss_start < r.rss_bound:
            r.checks_passed["rss"] += 1
        else:
            r.checks_failed["rss"] += 1
        time.sleep(0.1)  # let connectionLost of the last sessions be logged
        errors = log_errors(self._new_log())
        if not errors:
            r.checks_passed["log"] += 1
            return
        r.checks_failed["log"] += 1
        for error in errors:
            self._register(error, batch)
        # Errors not yet tied to an input: replay this batch (twice at most
        # per error, which may first have shown in the warm-up's probes).
        todo = [
            sig
            for sig, info in r.log_errors.items()
            if info["repro"] is None and info["replays"] < 2
        ]
        if todo and self.replay and outcomes:
            for sig in todo:
                r.log_errors[sig]["replays"] += 1
            self._attribute(todo, outcomes)

    def _register(self, error: LogError, batch: int) -> dict[str, Any]:
        """Count one logged error; its entry in the report."""
        info = self.report.log_errors.get(error.signature)
        if info is None:
            info = self.report.log_errors[error.signature] = {
                "count": 0,
                "batch": batch,
                "first_line": error.first,
                "text": error.text,
                "repro": None,
                "replays": 0,
            }
            self.out(f"batch {batch}: new log error: {error.signature}")
        info["count"] += 1
        return info

    def _attribute(self, signatures: list[str], outcomes: list[Outcome]) -> None:
        """Replay the batch's sessions one by one to find which input
        causes each new log error (bounded by the run's deadline)."""
        todo = set(signatures)
        for outcome in outcomes:
            if not todo or time.monotonic() > self._deadline:
                return
            script = self.generator.build(outcome.index)
            replayed = Session(script, self.server.ports[script.listener]).run()
            self._account(replayed)
            self.report.events["replayed"] += 1
            time.sleep(0.15)
            for error in log_errors(self._new_log()):
                info = self._register(error, self.report.batches)
                if error.signature in todo:
                    todo.discard(error.signature)
                    info["repro"] = {
                        "session": f"{script.seed}:{script.index}",
                        "listener": script.listener,
                        "session_kind": script.kind,
                        "sent": transcript_text(replayed.transcript),
                        "replies": replayed.reply_text[-1500:].decode("latin-1"),
                        "events": replayed.events,
                    }

    def run(self, seconds: float, max_sessions: int = 1_000_000) -> Report:
        """Fuzz for ``seconds`` or ``max_sessions`` sessions, whichever
        comes first, checking after every batch; the report."""
        r = self.report
        r.started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        start = time.monotonic()
        self._deadline = start + seconds
        self._new_log()  # start-up output is not the fuzzer's business
        # Warm-up: the first real sessions allocate caches; RSS counts after.
        self._check(0, [])
        index = 0
        batch = 0
        with ThreadPoolExecutor(self.concurrency) as pool:
            while True:
                if time.monotonic() >= self._deadline:
                    r.stopped = "time"
                    break
                if index >= max_sessions:
                    r.stopped = "session count"
                    break
                if self.server.process.poll() is not None:
                    r.stopped = f"server exited {self.server.process.returncode}"
                    r.health_failures.append(r.stopped)
                    break
                batch += 1
                count = min(self.batch_size, max_sessions - index)
                outcomes = list(pool.map(self.session, range(index, index + count)))
                index += count
                for outcome in outcomes:
                    self._account(outcome)
                self._check(batch, outcomes)
                r.batches = batch
                self.out(
                    f"batch {batch}: {r.total_sessions} sessions,"
                    f" RSS {r.rss_end / 1048576:.1f} MiB,"
                    f" {len(r.log_errors)} log error kinds, {len(r.findings)} findings"
                )
        r.duration = time.monotonic() - start
        return r


def prepare(server: Any) -> None:
    """Create the domain and accounts the fuzzer uses on ``server``."""
    server.zpop("domain", "add", DOMAIN)
    for address in (SENDER, PROBE, *FUZZ_MAILBOXES):
        server.add_account(address, PASSWORD)
    for address in (PROBE, *FUZZ_MAILBOXES):
        server.zpop("pop", "enable", address, "--mode", "all")


def fuzz(
    server: Any,
    seconds: float,
    seed: int,
    max_sessions: int = 1_000_000,
    concurrency: int = 4,
    batch_size: int = 40,
    rss_bound: int = DEFAULT_RSS_BOUND,
    out: Callable[[str], None] | None = None,
) -> Report:
    """Fuzz a started, ``prepare``d server; the report (see ``Fuzzer``)."""
    fuzzer = Fuzzer(server, seed, concurrency, batch_size, rss_bound, out=out)
    return fuzzer.run(seconds, max_sessions)


def start_server() -> Any:
    """A started and prepared server with ``SERVER_SETTINGS`` (the caller
    calls its ``cleanup``)."""
    from zpop.test.harness import ZpopServer

    server = ZpopServer(settings=SERVER_SETTINGS)
    try:
        server.start()
        prepare(server)
    except BaseException:
        server.cleanup()
        raise
    return server


def replay(spec: str) -> int:
    """Run one session SEED:INDEX against a fresh server, print everything."""
    seed, _, index = spec.partition(":")
    server = start_server()
    try:
        script = Generator(int(seed)).build(int(index))
        print(f"session {spec}: listener {script.listener}, kind {script.kind}")
        for step in script.steps:
            print("  step", repr(step)[:300])
        offset = os.path.getsize(server.log_path)
        outcome = Session(script, server.ports[script.listener]).run()
        time.sleep(0.5)
        print("sent:", transcript_text(outcome.transcript, 20000))
        print("received:", outcome.reply_text.decode("latin-1")[-5000:])
        print("events:", outcome.events, "findings:", outcome.findings)
        with open(server.log_path, "rb") as f:
            f.seek(offset)
            print("server log:\n" + f.read().decode("utf-8", "replace"))
    finally:
        server.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    """The CLI: start a server, fuzz it, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-sessions", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--rss-bound-mb", type=float, default=50.0)
    parser.add_argument("--json", help="also write the report as JSON here")
    parser.add_argument(
        "--replay",
        metavar="SEED:INDEX",
        help="run one session against a fresh server, verbosely",
    )
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.replay:
        return replay(args.replay)
    seconds = args.seconds if args.seconds is not None else 60.0 * (args.minutes or 1.0)
    server = start_server()
    try:
        report = fuzz(
            server,
            seconds,
            args.seed,
            args.max_sessions,
            args.concurrency,
            args.batch,
            int(args.rss_bound_mb * 1024 * 1024),
            out=None if args.quiet else lambda text: print(text, flush=True),
        )
    finally:
        server.cleanup()
    print(report.summary())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report.as_dict(), f, indent=2, default=str)
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
