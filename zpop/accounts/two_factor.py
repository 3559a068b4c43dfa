"""Two-factor authentication (DESIGN §1): the operator's switch, a user's
TOTP enrolment with recovery codes, the second-factor check of a web
sign-in, and turning it off.

Three states (``TwoFactorState``): ``off``; ``required`` by the operator
(``zpop twofactor enable``) and not enrolled yet; ``on``, an authenticator
app enrolled. In ``required`` and ``on`` alike the mail protocols refuse
the primary password (``Account.two_factor``, read by
``zpop.accounts.credentials``): only app-specific passwords work there. The
primary password plus a code signs in to the web settings only.

Codes are checked here (``zpop.accounts.totp``); that each is accepted once
is decided by the store's compare-and-set, so it holds across processes.
The front end throttles failed attempts, as for passwords. Recovery codes
are server-made secrets of the app-password shape (CONVENTIONS 19): shown
once, stored as keyed hashes, each spent once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from zpop.accounts import Clock, passwords, service, totp
from zpop.accounts.accounts import require_account
from zpop.accounts.errors import (
    AlreadyEnrolled,
    InvalidCode,
    InvalidInput,
    NotAllowed,
    NotEnrolled,
    SecondFactorUnreadable,
    WrongPassword,
)
from zpop.store import Account, AlreadyExists, IStore, NotFound, TotpSecret
from zpop.threads import Runner

#: Recovery codes made at enrolment (and on renewal), each single-use.
RECOVERY_CODES = 10
#: Characters of the unambiguous alphabet in one: 60 bits, and never six
#: digits, so a typed code is a TOTP code or a recovery code by its shape.
RECOVERY_CODE_LENGTH = 12
#: Keeps a recovery code's keyed hash from ever passing for another secret's.
_RECOVERY_KIND = "recovery-code"

_ENROL_CODE = (
    "the code is not valid: type the 6-digit code your authenticator app shows now"
)
_CURRENT_CODE = (
    "the code is not valid: type the 6-digit code your authenticator app"
    " shows now, or one of your unused recovery codes"
)


class TwoFactorState(StrEnum):
    """What ``zpop account show`` and the web settings show."""

    OFF = "off"
    #: Required by the operator; enrols at the next web sign-in.
    REQUIRED = "required"
    #: An authenticator app (TOTP) is enrolled.
    ON = "on"


def state_of(account: Account) -> TwoFactorState:
    """The account's two-factor state, from its record alone."""
    if account.totp_enrolled:
        return TwoFactorState.ON
    if account.two_factor:
        return TwoFactorState.REQUIRED
    return TwoFactorState.OFF


@dataclass(frozen=True)
class TwoFactorChange:
    """The account after the operator's switch; ``needs_app_password`` when
    requiring two-factor left the account without any app-specific
    password, so its mail clients cannot sign in until one is created;
    ``before`` the state it was in (a reset deletes an enrolment)."""

    account: Account
    needs_app_password: bool
    before: TwoFactorState


@dataclass(frozen=True)
class Enrolment:
    """An enrolment under way: what the page shows. Nothing is stored until
    ``confirm_enrolment``; the caller keeps ``secret`` until then."""

    secret: bytes
    #: The secret as a setup key to type, base32 in groups of four.
    text: str
    #: The ``otpauth://`` URI the QR code carries.
    uri: str
    #: The QR code, an SVG element to inline (``totp.qr_svg``).
    svg: str


@dataclass(frozen=True)
class TwoFactorStatus:
    """What the web settings page shows about an account's two-factor."""

    state: TwoFactorState
    #: Required by the operator: the account cannot turn it off.
    required: bool
    #: When the authenticator was enrolled (None unless ``on``).
    enrolled: float | None
    #: Recovery codes not used yet (0 unless ``on``).
    recovery_codes_left: int


def generate_recovery_code() -> str:
    """A new recovery code, in dash-separated groups of four (for paper)."""
    return passwords.generate_secret(RECOVERY_CODE_LENGTH).replace(" ", "-")


def recovery_code_digest(key: bytes, account_id: int, code: str) -> bytes | None:
    """The keyed hash a recovery code is stored as, or None if ``code``
    cannot be one (spaces, dashes and case do not matter)."""
    canonical = passwords.normalize_secret(code, RECOVERY_CODE_LENGTH)
    if canonical is None:
        return None
    return passwords.keyed_digest(key, _RECOVERY_KIND, account_id, canonical)


def _new_recovery_codes(key: bytes, account_id: int) -> tuple[list[str], list[bytes]]:
    codes = [generate_recovery_code() for _ in range(RECOVERY_CODES)]
    digests = [recovery_code_digest(key, account_id, c) for c in codes]
    return codes, [d for d in digests if d is not None]


def start_enrolment(address: str, issuer: str) -> Enrolment:
    """A new TOTP secret for the account at ``address``, as the page shows
    it (QR code and setup key), labelled ``issuer:address`` in the app.
    Stores nothing: a page abandoned half-way leaves no trace."""
    secret = totp.new_secret()
    uri = totp.provisioning_uri(secret, address.lower(), issuer)
    return Enrolment(secret, totp.secret_text(secret), uri, totp.qr_svg(uri))


@service
async def confirm_enrolment(
    store: IStore, key: bytes, clock: Clock, address: str, secret: bytes, code: str
) -> list[str]:
    """Turn two-factor on with the pending ``secret`` once ``code`` shows
    the app has it; returns the recovery codes, the only time they are
    seen. The code's step counts as used, so it cannot sign in afterwards.
    Raises InvalidCode, AlreadyEnrolled, UnknownAccount."""
    account = await require_account(store, address)
    if account.totp_enrolled:
        raise AlreadyEnrolled(account.address)
    if len(secret) != totp.SECRET_BYTES:
        raise InvalidInput(
            "the enrolment is not valid any more: start it again from the page"
        )
    now = clock.seconds()
    step = totp.accepted_step(secret, code, now, None)
    if step is None:
        raise InvalidCode(_ENROL_CODE)
    codes, digests = _new_recovery_codes(key, account.id)
    sealed = totp.seal(key, secret, account.address)
    try:
        await store.enrol_two_factor(account.address, sealed, step, digests, now)
    except AlreadyExists:
        # Confirmed from another page (or process) since we looked.
        raise AlreadyEnrolled(account.address) from None
    return codes


async def _accept_totp(
    store: IStore, key: bytes, account: Account, code: str, now: float
) -> bool:
    stored: TotpSecret | None = await store.get_totp_secret(account.id)
    if stored is None:
        return False  # reset since the account was read
    try:
        secret = totp.unseal(key, stored.sealed, account.address)
    except totp.SealError:
        raise SecondFactorUnreadable(account.address) from None
    step = totp.accepted_step(secret, code, now, stored.last_step)
    if step is None:
        return False
    accepted: bool = await store.accept_totp_step(account.id, step)
    return accepted


@service
async def verify_second_factor(
    store: IStore, key: bytes, clock: Clock, address: str, code: str
) -> bool:
    """Whether ``code`` is a valid second factor for the account now: a
    TOTP code not accepted before (one step of drift either way), or an
    unused recovery code, which this spends. False for an account without
    an enrolment. Raises UnknownAccount, SecondFactorUnreadable."""
    account = await require_account(store, address)
    if not account.totp_enrolled:
        return False
    now = clock.seconds()
    if totp.normalize_code(code) is not None:
        return await _accept_totp(store, key, account, code, now)
    digest = recovery_code_digest(key, account.id, code)
    if digest is None:
        return False
    used: bool = await store.use_recovery_code(account.id, digest, now)
    return used


@service
async def turn_off(
    store: IStore,
    key: bytes,
    clock: Clock,
    hashing: Runner,
    address: str,
    password: str,
    code: str,
) -> Account:
    """Turn two-factor off at the user's request: the primary password
    (bcrypt on the ``hashing`` runner) and a current code (or an unused
    recovery code, the way out with a lost phone) are both needed. The
    secret and recovery codes are deleted. Raises NotAllowed (required by
    the operator), NotEnrolled, WrongPassword, InvalidCode."""
    account = await require_account(store, address)
    if account.two_factor_required:
        raise NotAllowed(
            f"two-factor authentication is required for {account.address} by"
            " the operator: it cannot be turned off"
        )
    if not account.totp_enrolled:
        raise NotEnrolled(account.address)
    matched = False
    if account.password_hash is not None:
        matched = await hashing(
            passwords.check_password, password, account.password_hash
        )
    if not matched:
        raise WrongPassword()
    if not await verify_second_factor(store, key, clock, account.address, code):
        raise InvalidCode(_CURRENT_CODE)
    changed: Account = await store.reset_two_factor(account.address)
    return changed


@service
async def regenerate_recovery_codes(
    store: IStore, key: bytes, clock: Clock, address: str
) -> list[str]:
    """New recovery codes in place of every old one (used or not); returns
    them, the only time they are seen. The front end asks for the password
    again first. Raises NotEnrolled, UnknownAccount."""
    account = await require_account(store, address)
    if not account.totp_enrolled:
        raise NotEnrolled(account.address)
    codes, digests = _new_recovery_codes(key, account.id)
    try:
        await store.replace_recovery_codes(account.address, digests, clock.seconds())
    except NotFound:
        raise NotEnrolled(account.address) from None  # reset meanwhile
    return codes


@service
async def two_factor_status(store: IStore, address: str) -> TwoFactorStatus:
    """The account's state, since when, and how many recovery codes are
    left (never a secret)."""
    account = await require_account(store, address)
    state = state_of(account)
    enrolled = None
    left = 0
    if state is TwoFactorState.ON:
        stored: TotpSecret | None = await store.get_totp_secret(account.id)
        enrolled = None if stored is None else stored.enrolled
        codes = await store.list_recovery_codes(account.address)
        left = sum(1 for c in codes if c.used is None)
    return TwoFactorStatus(state, account.two_factor_required, enrolled, left)


@service
async def require(store: IStore, address: str) -> TwoFactorChange:
    """The operator requires two-factor (``zpop twofactor enable``): from
    now on the mail protocols refuse the primary password, and the account
    enrols at its next web sign-in (an enrolled account stays enrolled)."""
    account = await require_account(store, address)
    before = state_of(account)
    account = await store.set_two_factor(account.address, True)
    needs = not await store.list_app_passwords(account.address)
    return TwoFactorChange(account, needs, before)


@service
async def reset(store: IStore, address: str) -> TwoFactorChange:
    """The operator resets two-factor (``zpop twofactor disable``, the lost
    phone): secret and recovery codes are deleted, two-factor is off and
    required no more."""
    account = await require_account(store, address)
    before = state_of(account)
    account = await store.reset_two_factor(account.address)
    return TwoFactorChange(account, False, before)


@service
async def set_two_factor(store: IStore, address: str, enabled: bool) -> TwoFactorChange:
    """The operator's switch: ``require`` when ``enabled``, else ``reset``."""
    if enabled:
        return await require(store, address)
    return await reset(store, address)
