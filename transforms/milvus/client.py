"""Milvus clients: how they are made, and what their errors mean.

One place turns a :class:`MilvusTarget` into a ``MilvusClient`` (the token is
read here and goes nowhere else) and sorts errors into classes that the sink
acts on: retry, stop, or dead-letter the rows.
"""

from __future__ import annotations

from typing import Any

from transforms.config import MilvusTarget

__all__ = [
    "DATA",
    "FATAL",
    "TRANSIENT",
    "MilvusAuthError",
    "MilvusConnectionError",
    "connect",
    "error_kind",
    "skip_client_string_checks",
]

TRANSIENT = "transient"
"""Unavailable, timed out or rate-limited: retry the same request later."""
FATAL = "fatal"
"""The collection is gone or the credentials are refused: stop the run."""
DATA = "data"
"""The server refused the rows themselves: isolate and dead-letter them."""

_RATE_LIMIT_CODE = 8
_COLLECTION_NOT_FOUND_CODE = 100
_AUTH_CODE = 1800  # Milvus 2.4+ servers; older ones answer with a gRPC status
_AUTH_MESSAGES = ("auth check failure", "missing authorization", "unauthenticated", "credential")
_FATAL_MESSAGES = ("collection not found", "can't find collection", "collection not exist")
_TRANSIENT_MESSAGES = (
    "rate limit",
    "deadline",
    "unavailable",
    "timeout",
    "timed out",
    "connection",
    "connect",
)


class MilvusConnectionError(ConnectionError):
    """Milvus cannot be reached at the URI."""


class MilvusAuthError(PermissionError):
    """Milvus refused the credentials."""


def _is_auth_error(error: BaseException) -> bool:
    """Whether the server refused the credentials.

    pymilvus reports a refused token on connect as a generic "cannot connect"
    error; the gRPC status it was raised from says what really happened.
    """
    import grpc

    cause = error.__cause__
    if isinstance(cause, grpc.RpcError) and hasattr(cause, "code"):
        return bool(cause.code() == grpc.StatusCode.UNAUTHENTICATED)
    message = str(getattr(error, "message", error)).lower()
    return getattr(error, "code", None) == _AUTH_CODE or any(m in message for m in _AUTH_MESSAGES)


def connect(target: MilvusTarget) -> Any:
    """Opens a ``MilvusClient`` for the target; the token never leaves here.

    Raises:
      MilvusAuthError: the server refused the credentials.
      MilvusConnectionError: the server did not answer within
        ``target.connect_timeout_s``. Neither message holds the token.
    """
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    try:
        return MilvusClient(**target.client_kwargs())
    except MilvusException as e:
        if _is_auth_error(e):
            source = f"file {target.token_file}" if target.token_file else f"${target.token_env}"
            raise MilvusAuthError(
                f"Milvus at {target.uri} refused the credentials from {source}: authentication "
                f"failed ({e.message}). Check the token (user:password or API key)."
            ) from None
        cause = e.__cause__
        details = cause.details() if hasattr(cause, "details") else e.message
        raise MilvusConnectionError(
            f"cannot connect to Milvus at {target.uri} within {target.connect_timeout_s:g}s "
            f"({details}). Check the URI and that the server is up."
        ) from None


def skip_client_string_checks() -> None:
    """Turns off pymilvus' client-side VARCHAR length check, for rows checked already.

    pymilvus 3.0 checks a row's VARCHAR value by walking it character by
    character (``entity_helper.convert_to_str_array`` is handed the string,
    not a list of strings), so for rows the check cannot fail, yet it is two
    thirds of the client's CPU time in an upsert of 1 KB texts. The sink's rows
    were checked against the schema before (in UTF-8 bytes, as the server
    counts; see :mod:`transforms.rows`), and the server checks again.

    The switch is pymilvus' own module flag, so it holds for the whole
    process: column-based inserts made by other code in the process lose the
    client-side check, not the server's.
    """
    from pymilvus.client import entity_helper

    if hasattr(entity_helper, "CHECK_STR_ARRAY"):
        entity_helper.CHECK_STR_ARRAY = False


def error_kind(error: BaseException) -> str | None:
    """Classifies an error of a write; ``None`` means not Milvus's (a bug)."""
    import grpc
    from pymilvus.exceptions import MilvusException, MilvusUnavailableException

    if isinstance(error, (MilvusUnavailableException, TimeoutError, ConnectionError)):
        return TRANSIENT
    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        code = error.code()
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return FATAL
        if code in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.ABORTED,
        ):
            return TRANSIENT
        return None
    if isinstance(error, MilvusException):
        message = str(error.message).lower()
        if (
            error.code == _COLLECTION_NOT_FOUND_CODE
            or any(m in message for m in _FATAL_MESSAGES)
            or _is_auth_error(error)
        ):
            return FATAL
        if (
            error.retriable
            or error.code == _RATE_LIMIT_CODE
            or any(m in message for m in _TRANSIENT_MESSAGES)
        ):
            return TRANSIENT
        return DATA
    return None
