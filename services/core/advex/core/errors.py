"""Typed domain errors and the one interceptor that turns them into gRPC statuses.

Domain code (engines, stores, metrics) raises these and knows nothing of gRPC.
Servicers stay thin: they never build status codes themselves.
"""

from __future__ import annotations

import logging
import uuid

import grpc

from advex.core import handlers

log = logging.getLogger(__name__)


class AdvexError(Exception):
    """Base of every error a caller can act on. The message says what to fix."""

    code = grpc.StatusCode.INTERNAL


class InvalidArgument(AdvexError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(AdvexError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(AdvexError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class AlreadyExists(AdvexError):
    code = grpc.StatusCode.ALREADY_EXISTS


class ResourceExhausted(AdvexError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(AdvexError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(AdvexError):
    code = grpc.StatusCode.UNAVAILABLE


class Cancelled(AdvexError):
    code = grpc.StatusCode.CANCELLED


def printable(text: str, limit: int = 200) -> str:
    """`text` from a file or a client, fit for an error message: shortened,
    non-printable characters (controls, lone surrogates) escaped, so the
    message can always be sent."""
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def quoted(text: str, limit: int = 80) -> str:
    """`text` quoted for an error message, shortened and escaped."""
    return f"'{printable(text, limit)}'"


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The status a handler should end with for `exc`, or None if unexpected."""
    if isinstance(exc, AdvexError):
        return exc.code, str(exc)
    # An error from a downstream service keeps its code and message, so the
    # caller of the gateway sees the attack service's INVALID_ARGUMENT as is.
    if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call):
        return exc.code(), exc.details() or exc.code().name
    return None


def _abort(context: grpc.ServicerContext, exc: BaseException, method: str):
    mapped = status_of(exc)
    if mapped is None and not context.is_active():
        # The caller cancelled or went away (a draining gateway, Ctrl-C):
        # reading its request stream failed. An ordinary end, not a bug.
        log.info("%s ended early: the caller cancelled the call or went away (%s)", method, type(exc).__name__)
        mapped = (grpc.StatusCode.CANCELLED, "the caller cancelled the call")
    if mapped is None:
        incident = uuid.uuid4().hex[:12]
        log.exception("unexpected error in %s (incident %s)", method, incident)
        mapped = (
            grpc.StatusCode.INTERNAL,
            f"internal error (incident {incident}); the server log has the details",
        )
    context.abort(*mapped)


class ErrorInterceptor(grpc.ServerInterceptor):
    """Maps exceptions raised by any handler, unary or streaming, to statuses."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method

        def wrap_unary(behaviour):
            def run(request_or_iterator, context):
                try:
                    return behaviour(request_or_iterator, context)
                except Exception as exc:  # noqa: BLE001 - mapped, never swallowed
                    _abort(context, exc, method)

            return run

        def wrap_stream(behaviour):
            def run(request_or_iterator, context):
                try:
                    yield from behaviour(request_or_iterator, context)
                except Exception as exc:  # noqa: BLE001
                    _abort(context, exc, method)

            return run

        return handlers.wrapped(handler, wrap_unary, wrap_stream)
