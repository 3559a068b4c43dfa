"""Integration tests: the real server (twistd) on loopback with real TLS,
real clients and tools, real SQLite files, threads and processes."""
