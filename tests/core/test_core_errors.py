"""The one interceptor's mapping of exceptions to statuses (a unit: the
context is a stand-in recording what the handler ends with)."""

from __future__ import annotations

import logging

import grpc
import pytest

from advex.core.errors import ErrorInterceptor, InvalidArgument


class _Aborted(Exception):
    pass


class _Context:
    def __init__(self, active: bool):
        self.active = active
        self.status = None

    def is_active(self) -> bool:
        return self.active

    def abort(self, code, details):
        self.status = (code, details)
        raise _Aborted


def _handler(behaviour):
    return grpc.unary_unary_rpc_method_handler(behaviour)


class _Details:
    method = "/advex.test.Service/Method"


def _end(exc: BaseException, active: bool) -> tuple[grpc.StatusCode, str]:
    def behaviour(request, context):
        raise exc

    handler = ErrorInterceptor().intercept_service(lambda details: _handler(behaviour), _Details())
    context = _Context(active)
    with pytest.raises(_Aborted):
        handler.unary_unary(None, context)
    return context.status


def test_domain_errors_keep_their_code_and_message():
    assert _end(InvalidArgument("counts [9] exceed the pool"), True) == (
        grpc.StatusCode.INVALID_ARGUMENT, "counts [9] exceed the pool",
    )


def test_an_unexpected_error_is_internal_with_an_incident_logged(caplog):
    with caplog.at_level(logging.ERROR, logger="advex.core.errors"):
        code, details = _end(RuntimeError("bug"), True)
    assert code == grpc.StatusCode.INTERNAL and "incident" in details
    assert any(r.levelno == logging.ERROR for r in caplog.records)


def test_a_caller_that_went_away_is_cancelled_not_an_incident(caplog):
    # E.g. reading the request stream of a cancelled client-streaming call.
    with caplog.at_level(logging.INFO, logger="advex.core.errors"):
        code, _ = _end(RuntimeError("request stream ended by cancellation"), False)
    assert code == grpc.StatusCode.CANCELLED
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)
    assert any("caller cancelled the call or went away" in r.getMessage() for r in caplog.records)
