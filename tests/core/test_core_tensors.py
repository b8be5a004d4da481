"""The tensor codec and chunking every stream relies on."""

import numpy as np
import pytest

from advex.core import tensors
from advex.core.errors import InvalidArgument
from advex.v1 import tensor_pb2


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "uint8", "int32", "int64", "bool"])
def test_round_trip_keeps_values_shape_and_dtype(dtype, rng):
    array = (rng.random((3, 4, 2)) * 100).astype(dtype)
    back = tensors.from_proto(tensors.to_proto(array))
    assert back.dtype == array.dtype and back.shape == array.shape
    assert np.array_equal(back, array)


def test_a_tensor_whose_bytes_do_not_fit_its_shape_is_refused():
    bad = tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_FLOAT32, shape=[2, 3], data=b"\x00" * 20)
    with pytest.raises(InvalidArgument, match="needs 24 bytes"):
        tensors.from_proto(bad)


def test_unsupported_dtypes_are_named():
    with pytest.raises(InvalidArgument, match="cannot travel"):
        tensors.to_proto(np.array(["a"], dtype=object))


def test_chunks_stay_under_the_limit_and_reassemble(rng):
    images = rng.random((50, 64, 64, 3)).astype(np.float32)  # 2.4 MB, more than one message
    chunks = list(tensors.to_chunks(images, first_sample=100, max_bytes=64 * 1024))
    assert len(chunks) > 30
    assert all(c.ByteSize() <= 64 * 1024 for c in chunks)
    assembler = tensors.ChunkAssembler()
    results = [assembler.add(c) for c in chunks]
    assert all(r is None for r in results[:-1])
    first, array = results[-1]
    assert first == 100 and np.array_equal(array, images)


def test_chunks_out_of_order_are_refused(rng):
    chunks = list(tensors.to_chunks(rng.random((10, 1000)).astype(np.float32), 0, max_bytes=8192))
    assembler = tensors.ChunkAssembler()
    assembler.add(chunks[0])
    with pytest.raises(InvalidArgument, match="offset"):
        assembler.add(chunks[2])


def test_rows_per_message_bounds_a_message():
    assert tensors.rows_per_message(1000, max_bytes=1 << 20) == ((1 << 20) - 4096) // 1000
    assert tensors.rows_per_message(10 << 20) == 1
