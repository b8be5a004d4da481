"""What the server interceptors share: wrapping a gRPC method handler's
behaviour, whichever of the four call shapes it has."""

from __future__ import annotations

from collections.abc import Callable

import grpc

Wrap = Callable[[Callable], Callable]


def behaviour(handler: grpc.RpcMethodHandler) -> Callable:
    return handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream


def call_type(handler: grpc.RpcMethodHandler) -> str:
    """"unary", "server_stream", "client_stream" or "bidi_stream"."""
    if handler.unary_unary:
        return "unary"
    if handler.unary_stream:
        return "server_stream"
    return "client_stream" if handler.stream_unary else "bidi_stream"


def wrapped(handler: grpc.RpcMethodHandler, wrap_unary: Wrap, wrap_stream: Wrap) -> grpc.RpcMethodHandler:
    """`handler` with its behaviour wrapped: by `wrap_unary` where it answers
    once, by `wrap_stream` (a generator) where it streams its answer.

    A non-blocking behaviour (Health.Watch answers through a callback without
    holding a pool thread) is left as it is: wrapping it would hide that flag
    from grpc, and every open watch would then take a thread from the other
    calls."""
    if getattr(behaviour(handler), "experimental_non_blocking", False):
        return handler
    if handler.unary_unary:
        return handler._replace(unary_unary=wrap_unary(handler.unary_unary))
    if handler.unary_stream:
        return handler._replace(unary_stream=wrap_stream(handler.unary_stream))
    if handler.stream_unary:
        return handler._replace(stream_unary=wrap_unary(handler.stream_unary))
    return handler._replace(stream_stream=wrap_stream(handler.stream_stream))
