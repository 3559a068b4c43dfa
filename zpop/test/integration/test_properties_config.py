"""Property tests for the ini file parser (zpop.config.load).

Whatever an operator writes, ``load`` returns a Config or raises ConfigError
with a message naming the file (and the section and key at fault, in words,
not Python's); no other exception escapes.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from zpop import config
from zpop.config import Config, ConfigError, load
from zpop.test import properties  # noqa: F401 (the hypothesis profile)
from zpop.test.properties import MemoryTemp

#: Fragments of Python's own error texts, which an operator cannot act on.
PYTHON_WORDS = re.compile(
    r"invalid literal|could not convert|Exceeds the limit|set_int_max_str_digits"
    r"|Traceback|object has no attribute|unexpected keyword|NoneType|\bint\(\)"
)

#: Every (section, key) of the plain sections, and the field behind it.
KNOBS = {
    (section, f.name): f
    for section, record in config.SECTIONS.items()
    for f in dataclasses.fields(record)
    if "parse" in f.metadata
}
SCHEMA_KEYS = list(KNOBS)

#: One ini value: a line of any characters but line ends, and the shapes
#: the parsers look for (numbers, suffixes, booleans, hosts, ports, dates).
values = st.one_of(
    st.text(max_size=20).map(lambda s: s.replace("\n", " ").replace("\r", " ")),
    st.from_regex(r"-?[0-9]{0,6}(\.[0-9]{1,3})?[kKmMgG]?", fullmatch=True),
    st.sampled_from(
        ["yes", "no", "On", "0", "1e309", "nan", "-inf", "0x10", "²", "١٢", " "]
    ),
    st.from_regex(r"\[?[a-z0-9.:]{0,12}\]?(:[0-9²٣]{0,6})?", fullmatch=True),
    st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", fullmatch=True),
    st.integers(min_value=4000, max_value=6000).map(lambda n: "h:" + "7" * n),
)


class LoadTestCase(MemoryTemp, SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "zpop.ini")

    def load_bytes(self, data: bytes) -> Config | ConfigError:
        with open(self.path, "wb") as f:
            f.write(data)
        try:
            return load(self.path)
        except ConfigError as e:
            return e

    def assert_clear(self, error: ConfigError) -> str:
        """The message names the file and carries no Python internals."""
        message = str(error)
        self.assertTrue(message.startswith(self.path), message)
        self.assertIsNone(PYTHON_WORDS.search(message), message)
        self.assertNotIn("\n", message)
        return message


class ValueProperties(LoadTestCase):
    @given(st.lists(st.tuples(st.sampled_from(SCHEMA_KEYS), values), max_size=4))
    def test_any_values(self, items: list[tuple[tuple[str, str], str]]) -> None:
        """Any value: a Config, or a ConfigError naming section, key and value."""
        last: dict[tuple[str, str], str] = {}
        for key, value in items:
            last[key] = value
        sections: dict[str, list[str]] = {}
        for (section, key), value in last.items():
            sections.setdefault(section, []).append(f"{key} = {value}\n")
        text = "".join(f"[{s}]\n" + "".join(lines) for s, lines in sections.items())
        outcome = self.load_bytes(text.encode("utf-8"))
        if isinstance(outcome, ConfigError):
            message = self.assert_clear(outcome)
            self.assertTrue(
                any(
                    f"[{s}] {k}: bad value {v.strip()!r}: " in message
                    for (s, k), v in last.items()
                ),
                message,
            )
            return
        self.assertIsInstance(outcome, Config)
        for (section, key), value in last.items():
            knob = KNOBS[section, key]
            self.assertEqual(
                getattr(getattr(outcome, section), key),
                self.expected(knob, knob.metadata["parse"](value.strip())),
            )

    def expected(self, knob: dataclasses.Field[Any], parsed: Any) -> Any:
        if knob.metadata["path"] and parsed:
            return os.path.join(self.dir, parsed)
        return parsed

    @given(
        st.integers(min_value=1, max_value=10**12),
        st.sampled_from(["", "k", "M", "g"]),
        st.integers(min_value=4, max_value=31),
        st.booleans(),
    )
    def test_valid_numbers(self, n: int, suffix: str, cost: int, flag: bool) -> None:
        """Well-formed numbers, sizes and booleans come back as their values."""
        text = (
            f"[limits]\nrecipients = {n}\nmessage_size = {n}{suffix}\n"
            f"[accounts]\nbcrypt_cost = {cost}\n"
            f"[submission]\nsave_sent_copy = {'yes' if flag else 'off'}\n"
        )
        loaded = self.load_bytes(text.encode())
        assert isinstance(loaded, Config), loaded
        factor = {"": 1, "k": 1024, "M": 1024**2, "g": 1024**3}[suffix]
        self.assertEqual(
            (
                loaded.limits.recipients,
                loaded.limits.message_size,
                loaded.accounts.bcrypt_cost,
                loaded.submission.save_sent_copy,
            ),
            (n, n * factor, cost, flag),
        )

    @given(
        st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,3}", fullmatch=True),
        st.integers(min_value=1, max_value=65535) | st.none(),
        st.booleans(),
    )
    def test_next_hop(self, host: str, port: int | None, bracket: bool) -> None:
        """host, host:port and [host]:port give (host, port), port 25 by default."""
        text = f"[{host}]" if bracket else host
        if port is not None:
            text += f":{port}"
        loaded = self.load_bytes(f"[outbound]\nsmarthost = {text}\n".encode())
        assert isinstance(loaded, Config), loaded
        self.assertEqual(loaded.outbound.smarthost, (host, port or 25))

    @given(st.text("0123456789²³¹٠١٢٣٤٥٦٧٨٩", min_size=1, max_size=6))
    def test_port_digits(self, port: str) -> None:
        """A port is ASCII digits 1-65535; anything else gets a clear refusal."""
        loaded = self.load_bytes(f"[outbound]\nsmarthost = h:{port}\n".encode())
        if port.isascii() and 0 < int(port) < 65536:
            assert isinstance(loaded, Config), loaded
            self.assertEqual(loaded.outbound.smarthost, ("h", int(port)))
        else:
            assert isinstance(loaded, ConfigError), loaded
            self.assertIn("is not a number from 1 to 65535", self.assert_clear(loaded))


class FileProperties(LoadTestCase):
    @given(
        st.lists(
            st.one_of(
                st.sampled_from(
                    [
                        "[server]",
                        "[limits]",
                        "[listeners]",
                        "[routes]",
                        "[tls]",
                        "[tls:mail.example.com]",
                        "[nonsense]",
                        "[Server]",
                        "[",
                        "key = value",
                        "hostname = example.com",
                        "certificate = c.pem",
                        "example.net = mx.example.net:2525",
                        "pop3s = tcp:995",
                        "  continued",
                        "# comment",
                        "; comment",
                        "novalue",
                        "",
                    ]
                ),
                st.text(max_size=15),
            ),
            max_size=8,
        ).map("\n".join),
        st.sampled_from(["utf-8", "latin-1", "raw"]),
        st.binary(max_size=4),
    )
    def test_any_file(self, text: str, encoding: str, junk: bytes) -> None:
        """Any file content: a Config or a one-line ConfigError naming the file."""
        if encoding == "raw":
            data = text.encode("utf-8", "surrogatepass") + junk
        else:
            data = text.encode(encoding, "replace")
        outcome = self.load_bytes(data)
        if isinstance(outcome, ConfigError):
            self.assert_clear(outcome)
        else:
            self.assertIsInstance(outcome, Config)
