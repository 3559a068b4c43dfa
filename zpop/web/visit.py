"""What a page handler is given and gives back: the site's collaborators
(``WebContext``), one request with its language, cookies and session
(``Visit``), and the answer (``Response``), which the site sends with the
security headers once the handler, and any store change it made, is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.web.template import Tag

from zpop.accounts.credentials import Authenticator
from zpop.config import Config
from zpop.mailauth.dkim import Signer
from zpop.mailauth.dkim_keys import DkimKeys
from zpop.threads import Runner
from zpop.web import security
from zpop.web.i18n import Catalog

#: Longest form field accepted (a label, a password); longer is refused.
MAX_FIELD = 1024


@dataclass(frozen=True)
class WebContext:
    """The site's collaborators, handed down from ``zpop.tap``.

    ``store`` is the IStore the services take (a protocol module names no
    store module); ``clock`` the reactor or a ``task.Clock``.
    """

    store: Any
    authenticator: Authenticator
    clock: Any
    key: bytes
    config: Config
    #: Runs bcrypt off the reactor (the server's ``hashing`` pool).
    hashing: Runner
    #: DKIM-signs the mail the site sends (reset links) to other domains.
    signer: Signer | None = None
    #: The domains' DKIM keys, for the records the API lists.
    dkim: DkimKeys | None = None


class BadForm(Exception):
    """A form field that cannot be read (not UTF-8, repeated, too long)."""


@dataclass
class Visit:
    """One request as the handlers see it."""

    web: WebContext
    request: Any
    t: Catalog
    #: The live WebSession the session cookie names, or None.
    session: Any = None
    session_id: str | None = None
    #: The pre-session cookie value (made for this response if absent).
    pre: str = ""
    #: A query parameter ``lang`` asked for this language (set as cookie).
    switched: bool = False
    #: Two-factor is required and not enrolled yet: the session may reach
    #: the enrolment page only (set by the Router for signed-in pages).
    confined: bool = False

    @property
    def language(self) -> str:
        return self.t.language

    @property
    def path(self) -> str:
        """The request path, never the query string."""
        parts = [*self.request.prepath, *self.request.postpath]
        return "/" + "/".join(p.decode("utf-8", "replace") for p in parts)

    @property
    def client(self) -> str:
        return str(getattr(self.request.getClientAddress(), "host", "-"))

    @property
    def signed_in(self) -> bool:
        return self.session is not None and self.session.stage == "full"

    @property
    def address(self) -> str:
        """The signed-in account's address."""
        assert self.session is not None
        return str(self.session.address)

    def csrf(self) -> str:
        """The token for this page's forms: bound to the session if there is
        one, else to the pre-session cookie."""
        if self.session_id is not None and self.session is not None:
            return security.csrf_token(self.web.key, "session", self.session_id)
        return security.csrf_token(self.web.key, "pre", self.pre)

    def header(self, name: bytes) -> str | None:
        values = self.request.requestHeaders.getRawHeaders(name)
        return values[0].decode("latin-1") if values else None

    def field(self, name: str) -> str | None:
        """A form field's value, None when absent; BadForm when it is sent
        twice, is not UTF-8 or is longer than MAX_FIELD."""
        values = self.request.args.get(name.encode("ascii"))
        if not values:
            return None
        if len(values) > 1 or len(values[0]) > MAX_FIELD:
            raise BadForm(name)
        try:
            return str(values[0].decode("utf-8"))
        except UnicodeDecodeError:
            raise BadForm(name) from None


@dataclass
class Response:
    """A page (``body``, rendered in the site's frame) or a redirect."""

    status: int = 200
    title: str = ""
    body: list[Tag | str] = field(default_factory=list)
    location: str | None = None
    cookies: list[bytes] = field(default_factory=list)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: A body sent as it is (the style sheet), not drawn in the frame.
    raw: bytes | None = None


def redirect(location: str, status: int = 303) -> Response:
    """See Other (after a POST) or Found: the browser GETs ``location``."""
    return Response(status=status, location=location)
