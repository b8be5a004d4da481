"""The shared npy-header reader (advex.core.npz_archive) on crafted headers.
That storage and attack apply it is tested in tests/storage/test_storage_verify.py
and tests/attack/test_attack_datasets.py."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format

from advex.core.errors import InvalidArgument
from advex.core.npz_archive import BadArray, check_data_size, read_header, read_member_header


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _header(descr: str, shape: tuple[int, ...], version=(1, 0), fortran_order=False) -> bytes:
    """Just the .npy header of an array: what a crafted file can announce."""
    buffer = io.BytesIO()
    writer = npy_format.write_array_header_1_0 if version == (1, 0) else npy_format.write_array_header_2_0
    writer(buffer, {"descr": descr, "fortran_order": fortran_order, "shape": shape})
    return buffer.getvalue()


def _read(tmp_path: Path, data: bytes, compression=zipfile.ZIP_DEFLATED):
    """read_member_header of `data` stored as x.npy in a fresh zip."""
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("x.npy", data)
    with zipfile.ZipFile(path) as archive:
        return read_member_header(archive, archive.getinfo("x.npy"), "x")


def refused(tmp_path: Path, data: bytes, phrase: str) -> str:
    with pytest.raises(BadArray) as caught:
        _read(tmp_path, data)
    assert isinstance(caught.value, InvalidArgument)
    assert phrase in str(caught.value), str(caught.value)
    return str(caught.value)


def test_a_real_array_is_described_by_its_header(tmp_path):
    data = _npy(np.zeros((3, 4, 5, 1), np.float32))
    header = _read(tmp_path, data)
    assert (header.array, header.shape, header.dtype, header.fortran_order) == ("x", (3, 4, 5, 1), np.float32, False)
    assert header.data_offset == len(data) - 3 * 4 * 5 * 4 == 128
    assert (header.member_size, header.data_bytes, header.held_bytes) == (len(data), 240, 240)


def test_fortran_order_and_format_2_are_reported(tmp_path):
    data = _header("<i8", (2, 3), version=(2, 0), fortran_order=True) + bytes(48)
    header = _read(tmp_path, data, zipfile.ZIP_STORED)
    assert (header.shape, header.dtype, header.fortran_order) == ((2, 3), np.int64, True)
    assert header.data_offset == len(data) - 48


def test_the_stream_is_left_at_the_data(tmp_path):
    array = np.arange(6, dtype="<u2")
    path = tmp_path / "d.npz"
    np.savez(path, x=array)
    with zipfile.ZipFile(path) as archive, archive.open("x.npy") as stream:
        header = read_header(stream, archive.getinfo("x.npy"), "x")
        check_data_size(header)
        assert np.array_equal(np.frombuffer(stream.read(header.data_bytes), header.dtype), array)


@pytest.mark.parametrize("descr", ["|O", "<U1,|O"])
def test_object_dtypes_are_refused_from_the_header_alone(tmp_path, descr):
    dtype = [("a", "<U1"), ("b", "|O")] if "," in descr else descr
    refused(tmp_path, _header(npy_format.dtype_to_descr(np.dtype(dtype)), (2,)),
            "array 'x' holds Python objects (dtype=object); AdvEx never unpickles")


def test_sizes_are_checked_against_the_member(tmp_path):
    message = refused(tmp_path, _header("<i8", (2,)) + bytes(8),
                      "array 'x' is truncated: its header promises shape (2,) of int64 (16 bytes) but the file holds "
                      "only 8 bytes of data")
    assert message.endswith("save it with numpy.savez('data.npz', x=images, y=labels)")
    refused(tmp_path, _header("<i8", (2,)) + bytes(24), "array 'x' holds 8 bytes more than its header's shape (2,)")
    # Sizes no array could have are just larger than the member.
    refused(tmp_path, _header("<U4", (2**100,)), f"promises shape ({2**100},) of <U4 ({2**100 * 16} bytes)")


def test_the_size_check_comes_after_the_caller_reads_the_shape(tmp_path):
    # A caller may refuse an announced shape (as too large) before comparing it with the member.
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", _header("|u1", (4000, 512, 512, 3)))
    with zipfile.ZipFile(path) as archive, archive.open("x.npy") as stream:
        header = read_header(stream, archive.getinfo("x.npy"), "x")
    assert header.shape == (4000, 512, 512, 3) and header.held_bytes == 0
    with pytest.raises(BadArray, match="is truncated"):
        check_data_size(header)


@pytest.mark.parametrize(
    "data, phrase",
    [
        (_header("<U4", (-5,)), "array 'x' has the impossible shape (-5,) in its header"),
        (b"\x93NUMPY\x03\x00" + _header("<i8", (1,))[8:] + bytes(8),
         "array 'x' uses .npy format version 3.0; AdvEx reads versions 1.0 and 2.0"),
        (b"PK\x03\x04 not an npy member at all", "array 'x' is not a readable .npy array ("),
        (b"\x93NUMPY\x01\x00\x10", "array 'x' is not a readable .npy array ("),  # header cut short
        (_header("<f4", (1,) * 4000, version=(2, 0)), "array 'x' is not a readable .npy array ("),  # > numpy's cap
        (_header("<f4", (1,)).replace(b"<f4", b"<q9"), "array 'x' is not a readable .npy array ("),
    ],
    ids=["negative-shape", "version-3", "no-magic", "cut-short", "huge-header", "unknown-dtype"],
)
def test_headers_numpy_cannot_read_are_refused(tmp_path, data, phrase):
    refused(tmp_path, data, phrase)


@pytest.mark.parametrize("error", [ValueError("bad"), MemoryError(), OverflowError("too big"), TypeError("odd")])
def test_numpy_failures_on_a_header_are_refused_not_raised(tmp_path, monkeypatch, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(npy_format, "read_array_header_1_0", fail)
    refused(tmp_path, _npy(np.zeros(2, np.int64)), "array 'x' is not a readable .npy array (")


def test_the_images_budget_is_float32_bytes_and_says_what_fits():
    from advex.core.errors import ResourceExhausted
    from advex.core.npz_archive import DatasetTooLarge, check_images_budget

    check_images_budget((8, 8, 8, 1), 2048)  # exactly 2048 bytes as float32
    with pytest.raises(DatasetTooLarge) as over:
        check_images_budget((9, 8, 8, 1), 2048)
    assert isinstance(over.value, ResourceExhausted)
    assert "2304 bytes as float32" in str(over.value) and "use at most 8 images per dataset" in str(over.value)
    with pytest.raises(DatasetTooLarge, match="use smaller images"):
        check_images_budget((1, 32, 32, 1), 2048)
