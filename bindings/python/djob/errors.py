"""Exceptions raised by the bindings, one class per libdjob error code.

Every class derives from DjobError, which carries the library's code (a
negative DJOB_E* value), whether retrying later may help, and its one-sentence
message. Where a built-in exception means the same thing the class derives
from it too (InvalidError is a ValueError, DjobTimeout a TimeoutError).
"""

# djob_code_t values (include/djob/error.h).
EINVAL = -1
ENOTFOUND = -2
ECONFLICT = -3
ETIMEOUT = -4
EKAFKA = -5
EMONGO = -6
ENOMEM = -7
ESTATE = -8
EHTTP = -9
ETOOBIG = -10
EUNAUTHORIZED = -11
EFORBIDDEN = -12
EINTERNAL = -13


class DjobError(Exception):
    """A libdjob call failed. .code is the DJOB_E* code, .retriable says
    whether trying again later may succeed, .message is the library's text."""

    code = EINTERNAL

    def __init__(self, message, code=None, retriable=False):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.retriable = bool(retriable)

    def __str__(self):
        return self.message

    def __repr__(self):
        return f"{type(self).__name__}({self.message!r}, code={self.code})"


class InvalidError(DjobError, ValueError):
    """Bad argument or bad input (DJOB_EINVAL, HTTP 400)."""
    code = EINVAL


class NotFoundError(DjobError, LookupError):
    """No such job (DJOB_ENOTFOUND, HTTP 404)."""
    code = ENOTFOUND


class ConflictError(DjobError):
    """Illegal state transition or stale lease (DJOB_ECONFLICT, HTTP 409)."""
    code = ECONFLICT


class DjobTimeout(DjobError, TimeoutError):
    """A wait ran out (DJOB_ETIMEOUT)."""
    code = ETIMEOUT


class KafkaError(DjobError):
    """Kafka failed or is unreachable (DJOB_EKAFKA)."""
    code = EKAFKA


class MongoError(DjobError):
    """MongoDB failed or is unreachable (DJOB_EMONGO)."""
    code = EMONGO


class OutOfMemoryError(DjobError, MemoryError):
    """The library ran out of memory (DJOB_ENOMEM)."""
    code = ENOMEM


class StateError(DjobError):
    """The object is not in a state to do that (DJOB_ESTATE), for example a
    closed client or a worker that is already running."""
    code = ESTATE


class HttpError(DjobError):
    """The API answered with an error or is unreachable (DJOB_EHTTP)."""
    code = EHTTP


class TooBigError(DjobError, ValueError):
    """Input over a configured size limit (DJOB_ETOOBIG, HTTP 413)."""
    code = ETOOBIG


class UnauthorizedError(DjobError):
    """Missing or wrong token (DJOB_EUNAUTHORIZED, HTTP 401)."""
    code = EUNAUTHORIZED


class ForbiddenError(DjobError):
    """The token lacks the role (DJOB_EFORBIDDEN, HTTP 403)."""
    code = EFORBIDDEN


class InternalError(DjobError):
    """A bug or an unexpected condition in the library (DJOB_EINTERNAL)."""
    code = EINTERNAL


_BY_CODE = {cls.code: cls for cls in (
    InvalidError, NotFoundError, ConflictError, DjobTimeout, KafkaError, MongoError,
    OutOfMemoryError, StateError, HttpError, TooBigError, UnauthorizedError,
    ForbiddenError, InternalError)}


def error_for(code, message, retriable=False):
    """The exception for a library return code and message."""
    cls = _BY_CODE.get(code, DjobError)
    return cls(message, code=code, retriable=retriable)
