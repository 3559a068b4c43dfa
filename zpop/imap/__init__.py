"""IMAP4rev1 (RFC 3501, with the RFC 9051 extensions clients rely on)."""
