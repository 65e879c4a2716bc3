"""The idres error taxonomy and its one mapping table.

Every failure a client can see is one class here. The docstring is the default
message; a raise site passes a message that names the offending value. The table
at the bottom maps each class to the three codes a client sees, whatever the front
end: the Handle ``responseCode`` (in every JSON or msgpack body), the HTTP status
(from the Handle.Net server's ``statusCodeFromResponse``, handle-facts §2.3) and the
status of a binary-protocol response frame (docs/protocol.md). Front ends never make
up codes of their own: ``resolver/reply.py`` reads them from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class IdresError(Exception):
    """Internal error."""

    response_code: int = 2
    http_status: int = 500
    wire_status: int = 2
    details: dict[str, Any] | None = None  # more fields for the reply body (e.g. "errors")

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


class RecordInvalid(InvalidValue):
    """The record does not conform to its template."""

    def __init__(self, message: str | None = None, problems: Iterable[Any] = ()) -> None:
        super().__init__(message)
        self.details = {"errors": [p.to_json() for p in problems]}


class BulkInvalid(RecordInvalid):
    """Records of the request do not conform to their templates."""

    def __init__(self, message: str | None = None, failing: int = 0,
                 records: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.details = {"failing": failing, "records": records or []}


class TemplateInvalid(InvalidValue):
    """The template is not valid."""

    def __init__(self, message: str | None = None, problems: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.details = {"errors": [{"message": p} for p in problems]}


class BadRequest(IdresError):
    """Malformed request."""


class MismatchedIndexes(BadRequest):
    """The indexes in the query do not match the indexes in the body."""


class PayloadTooLarge(BadRequest):
    """Request body too large."""


class UnsupportedMediaType(BadRequest):
    """Unsupported media type: send application/json."""


class HeadersTooLarge(BadRequest):
    """Request header fields are too large."""


class NoSuchEndpoint(IdresError):
    """No such endpoint."""


class MethodNotAllowed(IdresError):
    """Method not allowed."""


# --- bad binary input (frames of the binary protocol) ---------------------------


class ProtocolError(IdresError):
    """Malformed frame."""

    def __init__(self, message: str | None = None, request_id: int = 0,
                 fatal: bool = False) -> None:
        super().__init__(message)
        self.request_id = request_id  # 0 when the frame did not get as far as its id
        self.fatal = fatal            # the stream cannot go on after this frame


class UnknownOperation(ProtocolError):
    """Unknown operation."""


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


class TemplateConflict(IdresError):
    """The template is not in a state that allows this."""

    def __init__(self, message: str | None = None,
                 report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        if report is not None:
            self.details = {"report": report}


class StateConflict(IdresError):
    """The identifier's lifecycle state does not allow this."""


class OperatorNotFound(IdresError):
    """Operator not found."""


class TokenNotFound(IdresError):
    """Token not found."""


class OperatorExists(IdresError):
    """Operator already exists."""


class PartyNotFound(IdresError):
    """Reader, group or grant not found."""


class PartyExists(IdresError):
    """Reader or group already exists."""


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


class PrefixNotHomed(IdresError):
    """That prefix doesn't live here."""


class UpstreamUnavailable(IdresError):
    """No authoritative server for the identifier answered in time."""


class RecursionLimit(IdresError):
    """Referrals loop or go deeper than allowed."""


class BadSignature(IdresError):
    """The answer's signature does not verify: it was altered or signed by another key."""


# --- the service itself ----------------------------------------------------------


class ServiceUnavailable(IdresError):
    """Service temporarily unavailable: the database cannot be reached."""


class NotSupported(IdresError):
    """Operation not supported."""


# The one table: class -> (Handle responseCode, HTTP status, binary-protocol status).
# Codes from the Handle protocol (RFC 3652 / AbstractMessage.java); statuses from the
# Handle.Net server's statusCodeFromResponse (handle-facts §2.3), except where HTTP has
# a more precise status that no Handle client depends on (404 for an unknown endpoint,
# 405, 413, 415, 431, 502, 504, 508). A binary-protocol response carries the responseCode.
ERROR_TABLE: dict[type[IdresError], tuple[int, int, int]] = {
    IdresError: (2, 500, 2),
    InvalidIdentifier: (102, 400, 102),
    InvalidPrefix: (102, 400, 102),
    InvalidValue: (202, 400, 202),
    RecordInvalid: (202, 400, 202),
    BulkInvalid: (202, 400, 202),
    TemplateInvalid: (202, 400, 202),
    BadRequest: (4, 400, 4),
    MismatchedIndexes: (4, 400, 4),
    PayloadTooLarge: (4, 413, 4),
    UnsupportedMediaType: (4, 415, 4),
    HeadersTooLarge: (4, 431, 4),
    NoSuchEndpoint: (2, 404, 2),
    MethodNotAllowed: (5, 405, 5),
    ProtocolError: (4, 400, 4),
    UnknownOperation: (5, 501, 5),
    IdentifierNotFound: (100, 404, 100),
    ValuesNotFound: (200, 400, 200),
    IdentifierExists: (101, 409, 101),
    ValueExists: (201, 409, 201),
    PrefixNotFound: (100, 404, 100),
    PrefixExists: (101, 409, 101),
    TemplateConflict: (2, 409, 2),
    StateConflict: (2, 409, 2),
    OperatorNotFound: (100, 404, 100),
    OperatorExists: (101, 409, 101),
    TokenNotFound: (100, 404, 100),
    PartyNotFound: (100, 404, 100),
    PartyExists: (101, 409, 101),
    AuthenticationNeeded: (402, 401, 402),
    # a wrong secret or an unknown identity is a failed authentication, answered as the
    # Handle.Net server does (measured against 9.3.1): 401, and pyhandle and b2handle raise
    # HandleAuthenticationError only on 401 or responseCode 402 (handle-facts §6.4)
    AuthenticationFailed: (402, 401, 402),
    InsufficientPermissions: (401, 403, 401),
    Referral: (303, 300, 303),
    # the Handle.Net server's answer for a prefix it does not serve (rc 301 → HTTP 400)
    PrefixNotHomed: (301, 400, 301),
    UpstreamUnavailable: (301, 504, 301),
    RecursionLimit: (6, 508, 6),
    BadSignature: (2, 502, 2),
    ServiceUnavailable: (3, 503, 3),
    NotSupported: (5, 501, 5),
}

for _cls, (_rc, _status, _wire) in ERROR_TABLE.items():
    _cls.response_code = _rc
    _cls.http_status = _status
    _cls.wire_status = _wire
del _cls, _rc, _status, _wire
