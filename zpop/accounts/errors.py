"""Domain errors of the account services.

The text is fit for an operator or a user: it says what is wrong in terms
of accounts, never a protocol code. Each front end adds its own way out
(the CLI names the ``zpop`` command that fixes it), so the attributes carry
what it needs for that.
"""

from __future__ import annotations


class AccountError(Exception):
    """A refused account operation; ``str()`` is the one-line reason."""


class InvalidInput(AccountError):
    """A value (label, password) that breaks the rules for it."""


class NotAllowed(AccountError):
    """The account may not do this (the Free-plan POP gate)."""


class UnknownAccount(AccountError):
    """No account at the address; ``alias_of`` names the owner when the
    address is an alias of another account."""

    def __init__(self, address: str, alias_of: str | None = None) -> None:
        if alias_of is None:
            super().__init__(f"no account {address}")
        else:
            super().__init__(f"{address} is an alias of {alias_of}, not an account")
        self.address = address
        self.alias_of = alias_of


class NotHosted(AccountError):
    """The address's domain is not one this service hosts."""

    def __init__(self, domain: str) -> None:
        super().__init__(f"{domain} is not a hosted domain")
        self.domain = domain


class AddressTaken(AccountError):
    """The address already belongs to an account or is an alias."""


class DomainHosted(AccountError):
    """The domain is hosted already."""


class UnknownAppPassword(AccountError):
    """The account has no app-specific password with that ID."""

    def __init__(self, address: str, password_id: int) -> None:
        super().__init__(f"{address} has no app-specific password {password_id}")
        self.address = address
        self.password_id = password_id


class WrongPassword(AccountError):
    """The primary password given to confirm a change is not the account's."""

    def __init__(self) -> None:
        super().__init__("the password is not right")


class InvalidCode(AccountError):
    """A two-factor code that is not valid now (mistyped, expired, used
    already, or a recovery code spent before)."""


class AlreadyEnrolled(AccountError):
    """Two-factor authentication is on already: it is turned off (or reset
    by the operator) before the account enrols again."""

    def __init__(self, address: str) -> None:
        super().__init__(f"two-factor authentication is on already for {address}")
        self.address = address


class NotEnrolled(AccountError):
    """The account has no authenticator enrolled (two-factor off, or
    required and not enrolled yet)."""

    def __init__(self, address: str) -> None:
        super().__init__(
            f"{address} has no authenticator app enrolled for two-factor"
            " authentication"
        )
        self.address = address


class SecondFactorUnreadable(AccountError):
    """The stored TOTP secret does not open with this server's key: the key
    file was replaced, or the database came from another installation."""

    def __init__(self, address: str) -> None:
        super().__init__(
            f"the two-factor secret of {address} cannot be read with this"
            " server's key: the operator can reset two-factor for the account"
        )
        self.address = address
