"""Real mail clients as the integration tests drive them, configured the
one way each test needs: over POP3S to the test server, trusting only its
self-signed certificate and checking the host name it is sent."""

from __future__ import annotations

import os
import subprocess
import textwrap

from zpop.test.harness import HOSTNAME, ZpopServer

PERSONAL = f"pop.{HOSTNAME}"


def run_mpop(
    server: ZpopServer, mpop: str, user: str, password: str, mbox: str
) -> subprocess.CompletedProcess[bytes]:
    """One mpop run that fetches into the mbox file ``mbox`` (made empty
    first) and deletes what it fetched (keep off)."""
    cafile = os.path.join(server.dir, "ca.pem")
    with open(cafile, "w", encoding="ascii") as f:
        f.write(server.certificate_pem())
    open(mbox, "w").close()
    rc = os.path.join(server.dir, "mpoprc")
    with open(rc, "w", encoding="utf-8") as f:
        f.write(
            textwrap.dedent(f"""\
            account zpop
            host 127.0.0.1
            port {server.ports["pop3s"]}
            tls on
            tls_starttls off
            tls_trust_file {cafile}
            tls_host_override {PERSONAL}
            auth user
            user {user}
            password {password}
            delivery mbox {mbox}
            keep off
            """)
        )
    os.chmod(rc, 0o600)
    return subprocess.run([mpop, "-C", rc, "zpop"], capture_output=True, timeout=60)
