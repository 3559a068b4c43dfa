"""Unit tests: in memory (MemoryStore, StringTransport, Clock), no reactor
and no sockets; the whole set runs in seconds."""
