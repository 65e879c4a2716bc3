"""The idres error taxonomy and its one mapping table.

Every failure a client can see is one class here. The docstring is the default
message; a raise site passes a message that names the offending value. The
table at the bottom maps each class to the Handle ``responseCode`` and the HTTP
status the Handle.Net REST API uses for it (handle-facts §2.3), so that HTTP
handlers, the CLI and later the binary protocol answer the same way.
"""

from __future__ import annotations


class IdresError(Exception):
    """Internal error."""

    response_code: int = 2
    http_status: int = 500

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip()
        super().__init__(self.message)


# --- bad text input (the identifier, the query, the body) -------------------


class InvalidIdentifier(IdresError):
    """Malformed identifier."""


class InvalidPrefix(InvalidIdentifier):
    """Malformed prefix."""


class InvalidValue(IdresError):
    """Invalid handle value."""


class BadRequest(IdresError):
    """Malformed request."""


class MismatchedIndexes(BadRequest):
    """The indexes in the query do not match the indexes in the body."""


class PayloadTooLarge(BadRequest):
    """Request body too large."""


class UnsupportedMediaType(BadRequest):
    """Unsupported media type: send application/json."""


# --- state -----------------------------------------------------------------


class IdentifierNotFound(IdresError):
    """Handle not found."""


class ValuesNotFound(IdresError):
    """Values not found."""


class IdentifierExists(IdresError):
    """Handle already exists."""


class ValueExists(IdresError):
    """Value already exists."""


class PrefixNotFound(IdresError):
    """Prefix not found."""


class PrefixExists(IdresError):
    """Prefix already exists."""


class OperatorNotFound(IdresError):
    """Operator not found."""


class TokenNotFound(IdresError):
    """Token not found."""


class OperatorExists(IdresError):
    """Operator already exists."""


# --- who is asking -------------------------------------------------------------


class AuthenticationNeeded(IdresError):
    """Authentication needed."""


class AuthenticationFailed(IdresError):
    """Authentication failed."""


class InsufficientPermissions(IdresError):
    """Insufficient permissions."""


# --- the node hierarchy ------------------------------------------------------------


class Referral(IdresError):
    """The identifier's prefix is delegated to other servers."""

    def __init__(self, message: str | None = None, delegation: object = None) -> None:
        super().__init__(message)
        self.delegation = delegation


class UpstreamUnavailable(IdresError):
    """No authoritative server for the identifier answered in time."""


class RecursionLimit(IdresError):
    """Referrals loop or go deeper than allowed."""


# --- the service itself ----------------------------------------------------------


class ServiceUnavailable(IdresError):
    """Service temporarily unavailable: the database cannot be reached."""


class NotSupported(IdresError):
    """Operation not supported."""


# The one table: class -> (Handle responseCode, HTTP status).
# Codes from the Handle protocol (RFC 3652 / AbstractMessage.java); statuses from
# the Handle.Net server's statusCodeFromResponse (handle-facts §2.3), except where
# HTTP has a more precise status that no Handle client depends on (413, 415).
ERROR_TABLE: dict[type[IdresError], tuple[int, int]] = {
    IdresError: (2, 500),
    InvalidIdentifier: (102, 400),
    InvalidPrefix: (102, 400),
    InvalidValue: (202, 400),
    BadRequest: (4, 400),
    MismatchedIndexes: (4, 400),
    PayloadTooLarge: (4, 413),
    UnsupportedMediaType: (4, 415),
    IdentifierNotFound: (100, 404),
    ValuesNotFound: (200, 400),
    IdentifierExists: (101, 409),
    ValueExists: (201, 409),
    PrefixNotFound: (100, 404),
    PrefixExists: (101, 409),
    OperatorNotFound: (100, 404),
    OperatorExists: (101, 409),
    TokenNotFound: (100, 404),
    AuthenticationNeeded: (402, 401),
    AuthenticationFailed: (403, 403),
    InsufficientPermissions: (401, 403),
    Referral: (303, 300),
    UpstreamUnavailable: (301, 504),
    RecursionLimit: (6, 508),
    ServiceUnavailable: (3, 503),
    NotSupported: (5, 501),
}

for _cls, (_rc, _status) in ERROR_TABLE.items():
    _cls.response_code = _rc
    _cls.http_status = _status
del _cls, _rc, _status
