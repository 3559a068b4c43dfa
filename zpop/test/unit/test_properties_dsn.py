"""Property tests for delivery status notifications (zpop.outbound.dsn.build_dsn).

Whatever the failed recipients' addresses, errors, statuses and remote
hosts hold (they come from remote servers' replies), and whatever the
original message's header section is, the bounce is a valid RFC 3464 /
RFC 6522 report that Python's email parser reads back with the right
fields, one block per recipient, and no injected line.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import re

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from zpop.outbound.dsn import MAX_HEADERS, SUBJECT, build_dsn, dsn_status
from zpop.store.records import OutboundRecipient
from zpop.test import properties  # noqa: F401 (the hypothesis profile)

NOW = 1_700_000_000.0
STATUS = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}", re.ASCII)
CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
LDH = "abcdefghijklmnopqrstuvwxyz0123456789"

#: Text from remote servers and the queue: anything, controls included.
anything = st.text(max_size=30) | st.builds(
    lambda piece, n: (piece * n)[:1200],
    st.text(min_size=1, max_size=4),
    st.integers(min_value=200, max_value=1200),
)
#: Printable one-line text, as most real values are.
printable = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60
)
hostnames = st.lists(st.text(LDH, min_size=1, max_size=20), min_size=1, max_size=6).map(
    ".".join
)
statuses = st.one_of(
    st.none(),
    st.from_regex(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True),
    st.sampled_from(["5.1.1\n", "5.١.١", "4.4.7", "9.9.9", "", "5.1", "550"]),
    st.text(max_size=8),
)
recipients = st.builds(
    OutboundRecipient,
    recipient=printable | anything,
    state=st.just("failed"),
    attempts=st.integers(min_value=0, max_value=50),
    next_attempt=st.floats(min_value=0, max_value=4e9),
    last_error=st.none() | anything,
    status=statuses,
    remote_mta=st.none() | printable | anything,
    diagnostic=st.none() | anything,
)
header_lines = st.lists(
    st.builds(
        lambda name, value: name + b": " + value + b"\r\n",
        st.sampled_from([b"Subject", b"From", b"To", b"X-Long", b"Received"]),
        st.binary(max_size=40).map(
            lambda b: b.replace(b"\r", b" ").replace(b"\n", b" ")
        ),
    ),
    max_size=6,
).map(b"".join)
originals = st.builds(
    lambda header, body: header + b"\r\n" + body,
    header_lines,
    st.binary(max_size=40),
)


def parse(dsn: bytes) -> email.message.Message:
    return email.message_from_bytes(dsn, policy=email.policy.compat32)


def cleaned(text: str) -> str:
    """What a value looks like once in the report: one printable ASCII line."""
    return CONTROL.sub(" ", text).strip()[:900].encode("ascii", "replace").decode()


class DSNProperties(SynchronousTestCase):
    def build(
        self,
        failed: list[OutboundRecipient],
        original: bytes,
        hostname: str = "mail.example.test",
        sender: str = "alice@example.com",
    ) -> bytes:
        return build_dsn(hostname, sender, failed, original, NOW - 60, NOW)

    @given(
        hostnames,
        printable | anything,
        st.lists(recipients, min_size=1, max_size=3),
        originals,
    )
    def test_report_structure(
        self,
        hostname: str,
        sender: str,
        failed: list[OutboundRecipient],
        original: bytes,
    ) -> None:
        """Any input: a 3-part report, a block per recipient, no injected header."""
        dsn = self.build(failed, original, hostname, sender)
        message = parse(dsn)
        self.assertEqual(message.get_content_type(), "multipart/report")
        self.assertEqual(message.get_param("report-type"), "delivery-status")
        self.assertEqual(message["Subject"], SUBJECT)
        self.assertEqual(message["Auto-Submitted"], "auto-replied")
        self.assertEqual(message["To"], f"<{cleaned(sender)}>")
        self.assertEqual(
            message["From"], f"Mail Delivery System <MAILER-DAEMON@{hostname}>"
        )
        self.assertEqual(
            sorted(set(message.keys())),
            sorted(
                {"From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted",
                 "MIME-Version", "Content-Type"}
            ),
        )  # fmt: skip
        self.assertEqual(message.defects, [])
        parts = message.get_payload()
        self.assertEqual(
            [p.get_content_type() for p in parts],
            ["text/plain", "message/delivery-status", "text/rfc822-headers"],
        )
        blocks = parts[1].get_payload()
        self.assertEqual(len(blocks), 1 + len(failed))
        self.assertEqual(blocks[0]["Reporting-MTA"], f"dns; {hostname}")
        for block, recipient in zip(blocks[1:], failed, strict=True):
            self.assertEqual(
                block["Final-Recipient"],
                f"rfc822; {cleaned(recipient.recipient)}",
            )
            self.assertEqual(block["Action"], "failed")
            self.assertEqual(block["Status"], dsn_status(recipient))
            self.assertEqual(
                block["Remote-MTA"] is not None, bool(recipient.remote_mta)
            )
            code = block["Diagnostic-Code"]
            kind = "smtp;" if recipient.diagnostic else "X-zpop;"
            self.assertTrue(code is not None and code.startswith(kind), code)
            self.assertIsNotNone(block["Last-Attempt-Date"])
        for part in parts:
            self.assertEqual(part.defects, [])

    @given(st.lists(recipients, min_size=1, max_size=3), originals)
    def test_status_valid(
        self, failed: list[OutboundRecipient], original: bytes
    ) -> None:
        """Each Status is the recipient's RFC 3463 code if valid, else 5.0.0."""
        blocks = parse(self.build(failed, original)).get_payload()[1].get_payload()
        for block, recipient in zip(blocks[1:], failed, strict=True):
            status = block["Status"]
            self.assertRegex(status, STATUS)
            self.assertTrue(STATUS.fullmatch(status), status)
            if recipient.status and STATUS.fullmatch(recipient.status):
                self.assertEqual(status, recipient.status)
            else:
                self.assertEqual(status, "5.0.0")

    @given(
        hostnames,
        st.lists(recipients, min_size=1, max_size=3),
        originals,
    )
    def test_lines(
        self, hostname: str, failed: list[OutboundRecipient], original: bytes
    ) -> None:
        """CRLF lines of at most 998 octets, ASCII text, a boundary of <= 70 chars."""
        dsn = self.build(failed, original, hostname)
        self.assertTrue(dsn.endswith(b"\r\n"))
        own = dsn[: dsn.index(b"Content-Type: text/rfc822-headers")]
        self.assertTrue(own.isascii())
        for line in dsn.split(b"\r\n"):
            self.assertNotIn(b"\n", line)
            self.assertLessEqual(len(line), 998, line[:80])
        boundary = parse(dsn).get_boundary()
        assert boundary is not None
        self.assertLessEqual(len(boundary), 70)
        self.assertRegex(boundary, r"^[0-9A-Za-z'()+_,./:=?-]+$")

    @given(
        st.lists(
            st.builds(
                OutboundRecipient,
                recipient=printable,
                state=st.just("failed"),
                attempts=st.just(1),
                next_attempt=st.just(NOW),
                last_error=printable,
                status=st.from_regex(r"5\.[0-9]\.[0-9]", fullmatch=True),
                remote_mta=printable.filter(lambda s: "[" not in s),
                diagnostic=printable,
            ),
            min_size=1,
            max_size=3,
        ),
        originals,
    )
    def test_values_survive(
        self, failed: list[OutboundRecipient], original: bytes
    ) -> None:
        """Printable values arrive verbatim; the original headers are attached."""
        dsn = self.build(failed, original)
        message = parse(dsn)
        parts = message.get_payload()
        for block, r in zip(parts[1].get_payload()[1:], failed, strict=True):
            self.assertEqual(block["Final-Recipient"], f"rfc822; {r.recipient}")
            self.assertEqual(block["Remote-MTA"], f"dns; {r.remote_mta}")
            self.assertEqual(block["Diagnostic-Code"], f"smtp; {r.diagnostic}")
        human = parts[0].get_payload()
        for r in failed:
            self.assertIn(f"<{r.recipient}>: {r.last_error}", human)
        header = (
            original[: original.find(b"\r\n\r\n") + 2]
            if b"\r\n\r\n" in original
            else b""
        )
        if original.startswith(b"\r\n"):
            header = b""
        start = dsn.index(b"Undelivered Message Headers\r\n\r\n") + 31
        self.assertEqual(dsn[start : start + len(header) + 2], header + b"\r\n")

    @given(st.integers(min_value=1, max_value=200))
    def test_huge_header_cut_at_line(self, extra: int) -> None:
        """An original header section over the limit is cut at a line end."""
        line = b"X-Filler: " + b"y" * 90 + b"\r\n"
        original = line * (MAX_HEADERS // len(line) + extra) + b"\r\nbody\r\n"
        dsn = self.build(
            [
                OutboundRecipient(
                    "b@remote.example", "failed", 1, NOW, "x", None, None, None
                )
            ],
            original,
        )
        attached = parse(dsn).get_payload()[2].get_payload(decode=True)
        self.assertLessEqual(len(attached), MAX_HEADERS)
        self.assertTrue(attached.endswith(b"\r\n"))
        self.assertEqual(set(attached.split(b"\r\n")[:-1]), {line[:-2]})
