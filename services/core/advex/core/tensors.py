"""numpy arrays <-> advex.v1.Tensor, and splitting large arrays into chunks.

Tensors travel as dtype + shape + raw little-endian row-major bytes. Senders
bound every message by bytes (MAX_MESSAGE_BYTES), far below gRPC's 4 MiB limit.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from advex.core.errors import InvalidArgument
from advex.v1 import tensor_pb2

MAX_MESSAGE_BYTES = 1 << 20  # 1 MiB

_TO_NUMPY = {
    tensor_pb2.DTYPE_FLOAT32: np.dtype("<f4"),
    tensor_pb2.DTYPE_FLOAT64: np.dtype("<f8"),
    tensor_pb2.DTYPE_FLOAT16: np.dtype("<f2"),
    tensor_pb2.DTYPE_UINT8: np.dtype("u1"),
    tensor_pb2.DTYPE_INT32: np.dtype("<i4"),
    tensor_pb2.DTYPE_INT64: np.dtype("<i8"),
    tensor_pb2.DTYPE_BOOL: np.dtype("?"),
}
_FROM_NUMPY = {dt.newbyteorder("=") if dt.byteorder != "|" else dt: code for code, dt in _TO_NUMPY.items()}


def dtype_code(dtype: np.dtype) -> int:
    dtype = np.dtype(dtype)
    native = dtype.newbyteorder("=") if dtype.byteorder not in ("|", "=") else dtype
    try:
        return _FROM_NUMPY[native]
    except KeyError:
        raise InvalidArgument(
            f"arrays of dtype {dtype} cannot travel; use one of "
            f"{sorted(str(d) for d in _FROM_NUMPY)}"
        ) from None


def numpy_dtype(code: int) -> np.dtype:
    try:
        return _TO_NUMPY[code]
    except KeyError:
        raise InvalidArgument(f"unknown tensor dtype code {code}") from None


def to_proto(array: np.ndarray) -> tensor_pb2.Tensor:
    array = np.asarray(array)
    code = dtype_code(array.dtype)
    data = np.ascontiguousarray(array, dtype=_TO_NUMPY[code]).tobytes()
    return tensor_pb2.Tensor(dtype=code, shape=list(array.shape), data=data)


def from_proto(tensor: tensor_pb2.Tensor) -> np.ndarray:
    dtype = numpy_dtype(tensor.dtype)
    shape = tuple(int(s) for s in tensor.shape)
    if any(s < 0 for s in shape):
        raise InvalidArgument(f"tensor shape {shape} has a negative dimension")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(tensor.data) != expected:
        raise InvalidArgument(
            f"tensor of shape {shape} and dtype {dtype} needs {expected} bytes, got {len(tensor.data)}"
        )
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def rows_per_message(bytes_per_row: int, max_bytes: int = MAX_MESSAGE_BYTES, overhead: int = 4096) -> int:
    """How many rows fit one message of at most `max_bytes` (at least one)."""
    return max(1, (max_bytes - overhead) // max(1, bytes_per_row))


def to_chunks(
    array: np.ndarray, first_sample: int, max_bytes: int = MAX_MESSAGE_BYTES
) -> Iterator[tensor_pb2.TensorChunk]:
    """Splits `array` into TensorChunks whose data is at most `max_bytes` - 4 KiB."""
    array = np.asarray(array)
    code = dtype_code(array.dtype)
    raw = np.ascontiguousarray(array, dtype=_TO_NUMPY[code]).tobytes()
    if max_bytes <= 4096:
        raise InvalidArgument(f"max_bytes must exceed 4096 (room for the chunk's framing), got {max_bytes}")
    piece = max_bytes - 4096
    offsets = range(0, max(1, len(raw)), piece)
    for offset in offsets:
        yield tensor_pb2.TensorChunk(
            first_sample=first_sample,
            dtype=code,
            shape=list(array.shape),
            offset=offset,
            data=raw[offset : offset + piece],
            last=offset + piece >= len(raw),
        )


class ChunkAssembler:
    """Reassembles consecutive TensorChunks into arrays."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._head: tensor_pb2.TensorChunk | None = None
        self._received = 0

    def add(self, chunk: tensor_pb2.TensorChunk) -> tuple[int, np.ndarray] | None:
        """Returns (first_sample, array) when `chunk` completes a tensor."""
        if self._head is None:
            self._head = chunk
        elif chunk.first_sample != self._head.first_sample:
            raise InvalidArgument(
                f"chunk for sample {chunk.first_sample} arrived before the tensor for "
                f"sample {self._head.first_sample} was complete"
            )
        if chunk.offset != self._received:
            raise InvalidArgument(f"chunk at offset {chunk.offset} arrived, expected offset {self._received}")
        self._parts.append(chunk.data)
        self._received += len(chunk.data)
        if not chunk.last:
            return None
        head, data = self._head, b"".join(self._parts)
        self._head, self._parts, self._received = None, [], 0
        whole = tensor_pb2.Tensor(dtype=head.dtype, shape=head.shape, data=data)
        return head.first_sample, from_proto(whole)
