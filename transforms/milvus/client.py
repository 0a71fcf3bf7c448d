"""Milvus clients: how they are made, what their errors mean, how rows pass pymilvus.

One place turns a :class:`MilvusTarget` into a ``MilvusClient`` (the token is
read here and goes nowhere else), sorts errors into classes that the sink
acts on (retry, stop, or dead-letter the rows), and makes the VARCHAR values
of our own rows cheap for pymilvus to check (:class:`CheckedStr`) without
changing pymilvus for anyone else in the process.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Iterator
from typing import Any, NoReturn

from transforms.config import MilvusTarget

__all__ = [
    "DATA",
    "FATAL",
    "TRANSIENT",
    "CheckedStr",
    "MilvusAuthError",
    "MilvusConnectionError",
    "checked_strings_help",
    "close_embedded",
    "connect",
    "error_kind",
]

_LOGGER = logging.getLogger(__name__)

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


# An embedded Lite store (a ``*.db`` URI) is served inside this process by
# milvus-lite, under gRPC's default ping policy, which ends a connection that
# pings while idle (see transforms.milvus.lite_server). pymilvus' channels ping
# every 10 s, so an idle client lost its connection after about 140 s. Over
# loopback, within one process, there is no dead peer for pings to find.
_EMBEDDED_GRPC_OPTIONS = {
    "grpc.keepalive_time_ms": 2**31 - 1,  # gRPC's "never"
    "grpc.keepalive_permit_without_calls": 0,
}


def _client_kwargs(target: MilvusTarget) -> dict[str, Any]:
    """Keyword arguments for ``MilvusClient``, secret included: never keep or log them.

    The target's own, plus, for an embedded Lite store, gRPC options under
    which the client never pings its in-process server (the target's own
    ``grpc_options`` win).
    """
    kwargs: dict[str, Any] = dict(target.client_kwargs())
    if not target.is_remote:
        kwargs["grpc_options"] = {**_EMBEDDED_GRPC_OPTIONS, **kwargs.get("grpc_options", {})}
    return kwargs


def connect(target: MilvusTarget) -> Any:
    """Opens a ``MilvusClient`` for the target; the token never leaves here.

    Raises:
      MilvusAuthError: the server refused the credentials.
      MilvusConnectionError: the server did not answer within
        ``target.connect_timeout_s``. Neither message holds the token.
    """
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    if not target.is_remote:
        # pymilvus opens a Lite store only in a folder that exists; the store
        # itself it creates, so its folder is made here as any output's is.
        os.makedirs(os.path.dirname(os.path.abspath(target.uri)), exist_ok=True)
    try:
        return MilvusClient(**_client_kwargs(target))
    except MilvusException as e:
        _raise_connect_error(target, e)


def close_embedded(target: MilvusTarget) -> float:
    """Closes an embedded Lite store this process has open; the seconds it took.

    pymilvus serves a ``*.db`` store inside the process and closes it only
    when the interpreter exits, and Milvus Lite builds the indexes of what was
    written when it closes: after a large run that is seconds to minutes in
    which the process seems done but does not end. Closing it here lets the
    caller count that time and end when it says it ended. A later client of
    the same store opens it again. A server's URI, or a store not open in
    this process, is left alone (0 s).
    """
    if target.is_remote:
        return 0.0
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:  # no embedded store without milvus-lite
        return 0.0
    started = time.monotonic()
    server_manager_instance.release_server(target.uri)
    seconds = time.monotonic() - started
    _LOGGER.info("Closed the Milvus Lite store %s in %.1fs", target.uri, seconds)
    return seconds


def _raise_connect_error(target: MilvusTarget, e: Any) -> NoReturn:
    """Raises the user-facing error for a failed connect."""
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


class CheckedStr(str):
    """A VARCHAR value of our own rows, which pymilvus checks in one step.

    pymilvus 3.0 builds a row's VARCHAR value with ``convert_to_str_array``,
    code written for a column: it iterates the value and checks each item's
    type and length. Handed one ``str``, it walks the characters (two calls
    each) and checks nothing, since a character is never too long: about
    40% of the client's CPU in an upsert of 1 KB texts. Iterated, a
    ``CheckedStr`` yields itself once, so the same code makes one real check
    (the length in characters against ``max_length``) in two calls.
    Measured with pymilvus 3.0.2, client CPU of one upsert of 5,120 rows of
    1 KB text, 256 float32 and JSON metadata (best of 20): 0.50 s with plain
    strings, 0.31 s with ``CheckedStr`` copies, 0.30 s with pymilvus' check
    switched off for the whole process (what this replaces).

    Only the values made here are affected; every other pymilvus user in the
    process keeps pymilvus' behaviour. Use it only for strings the caller has
    checked (:mod:`transforms.milvus.rows` checks them in UTF-8 bytes, as
    Milvus counts; Milvus Lite counts characters), and do not hand it to
    other code: it does not iterate as a string does.
    """

    __slots__ = ()

    def __iter__(self) -> Iterator[str]:
        return iter((self,))


class _Probe(CheckedStr):
    __slots__ = ()
    iterated = 0

    def __iter__(self) -> Iterator[str]:
        _Probe.iterated += 1
        return super().__iter__()


@functools.cache
def checked_strings_help() -> bool:
    """Whether :class:`CheckedStr` values make this pymilvus' row requests faster.

    Probes once per process, without a server: builds a one-row upsert
    request with pymilvus' own row request builder (the code behind
    ``MilvusClient.upsert``) and looks at what it did with a ``CheckedStr``.
    Says what it found in the log, once: a warning if the builder is not
    where it was or mishandles the value (plain strings are then written,
    as fast as this pymilvus makes them), an info line if it no longer
    walks VARCHAR values (plain strings are as fast).

    Returns:
      True if the builder walks VARCHAR values and sends a ``CheckedStr`` as
      the string it is; False if plain strings should be written.
    """
    import pymilvus

    version = getattr(pymilvus, "__version__", "?")
    _Probe.iterated = 0
    value = _Probe("probe")
    try:
        from pymilvus import DataType
        from pymilvus.client.prepare import Prepare

        fields = [
            {
                "name": "id",
                "type": DataType.VARCHAR,
                "is_primary": True,
                "params": {"max_length": 8},
            },
            {"name": "text", "type": DataType.VARCHAR, "params": {"max_length": 8}},
        ]
        request = Prepare.row_upsert_param(
            "probe", [{"id": CheckedStr("a"), "text": value}], "", fields
        )
        sent = {f.field_name: list(f.scalars.string_data.data) for f in request.fields_data}
    except Exception as e:  # any change of the builder: say so, write plain strings
        _LOGGER.warning(
            "pymilvus %s: its row request builder (pymilvus.client.prepare.Prepare."
            "row_upsert_param) cannot be probed (%s: %s); writing plain strings, whose "
            "client-side length check costs about 40%% of the client's CPU for 1 KB texts.",
            version, type(e).__name__, e,
        )  # fmt: skip
        return False
    if sent.get("text") != ["probe"] or sent.get("id") != ["a"]:
        _LOGGER.warning(
            "pymilvus %s: its row request builder sent %r for pre-checked strings; writing "
            "plain strings, whose client-side length check costs about 40%% of the client's "
            "CPU for 1 KB texts.",
            version, sent,
        )  # fmt: skip
        return False
    if not _Probe.iterated:
        _LOGGER.info(
            "pymilvus %s no longer walks VARCHAR values character by character: writing plain "
            "strings, which are as fast.",
            version,
        )
        return False
    _LOGGER.debug("pymilvus %s: VARCHAR values are written as pre-checked strings.", version)
    return True


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
