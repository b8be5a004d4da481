"""The one safe reader of `.npy` headers inside an `.npz` (a zip), used by
storage (on upload) and attack (before loading a dataset).

An npz is a zip, so a few MB can inflate to many GB, and an npy header can
announce any shape and dtype. The header is read alone, before any data is
decompressed; object dtypes (pickles) are refused from it; and the data it
announces is compared with what the zip member holds, so a header that lies
about its size is refused before its data is read. numpy's own failures on
a hostile header (ValueError, MemoryError, OverflowError, ...) become a
BadArray that says what is wrong and how to save the file.

No gRPC, no TensorFlow: numpy only.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

from advex.core.errors import InvalidArgument, ResourceExhausted, printable

SAVE_NPZ = "save it with numpy.savez('data.npz', x=images, y=labels)"
# The npy format versions numpy.savez writes (3.0 only adds UTF-8 field names).
_VERSIONS = ((1, 0), (2, 0))


class BadArray(InvalidArgument):
    """An array's npy header is unreadable, holds Python objects, or
    announces more or less data than its zip member holds."""


class DatasetTooLarge(ResourceExhausted):
    """The images exceed the mesh's dataset budget (ADVEX_MAX_DATASET_BYTES)."""


def check_images_budget(x_shape: tuple[int, ...], max_bytes: int) -> None:
    """Refuses images that would take more than `max_bytes` as float32, the
    form the attack service holds and attacks them in, whatever dtype the file
    stores. Storage applies it on upload and attack before loading, with the
    same variable, so an upload that passes also loads."""
    as_float32 = math.prod(x_shape) * 4
    if as_float32 <= max_bytes:
        return
    per_image = math.prod(x_shape[1:]) * 4
    fit = max_bytes // per_image if per_image else 0
    advice = (
        f"use at most {fit} images per dataset (split the data into several datasets)"
        if fit
        else "use smaller images (a single image of this size is already too large)"
    )
    raise DatasetTooLarge(
        f"x has shape {x_shape}: {math.prod(x_shape)} values, {as_float32} bytes as float32 (the form attacks use); "
        f"this server accepts datasets of at most {max_bytes} bytes as float32 (ADVEX_MAX_DATASET_BYTES); {advice}"
    )


@dataclass(frozen=True)
class NpyHeader:
    array: str  # the array's name in the npz ("x" for member "x.npy")
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    # Bytes of magic and header before the data; the stream is left there.
    data_offset: int
    # Uncompressed size of the whole member (ZipInfo.file_size).
    member_size: int

    @property
    def data_bytes(self) -> int:
        """What the header announces: prod(shape) * itemsize."""
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def held_bytes(self) -> int:
        """What the member holds after the header."""
        return self.member_size - self.data_offset


def read_header(stream: IO[bytes], member: zipfile.ZipInfo, array: str) -> NpyHeader:
    """The header of the npy member `member`, read from `stream` (open at the
    member's start and left at its data). BadArray for an unreadable header,
    an impossible shape or an object dtype.

    The announced size is not yet compared with the member: call
    `check_data_size` before reading the data (a caller may first apply
    limits of its own to the announced shape)."""
    try:
        version = npy_format.read_magic(stream)
        if version not in _VERSIONS:
            raise BadArray(
                f"array '{array}' uses .npy format version {version[0]}.{version[1]}; AdvEx reads versions 1.0 "
                f"and 2.0, which numpy.savez writes; {SAVE_NPZ}"
            )
        if version == (1, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(stream)
        else:
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(stream)
    except (ValueError, TypeError, OverflowError, MemoryError, RecursionError, EOFError) as error:
        raise BadArray(
            f"array '{array}' is not a readable .npy array ({printable(str(error))}); {SAVE_NPZ}"
        ) from None
    if any(d < 0 for d in shape):
        raise BadArray(f"array '{array}' has the impossible shape {shape} in its header; {SAVE_NPZ}")
    if dtype.hasobject:
        raise BadArray(
            f"array '{array}' holds Python objects (dtype=object); AdvEx never unpickles; save numeric arrays "
            f"(e.g. np.asarray({array}, dtype=np.int64) for labels)"
        )
    return NpyHeader(
        array=array,
        shape=tuple(int(d) for d in shape),
        dtype=dtype,
        fortran_order=bool(fortran_order),
        data_offset=stream.tell(),
        member_size=member.file_size,
    )


def check_data_size(header: NpyHeader) -> None:
    """BadArray unless the member holds exactly the data its header announces."""
    expected, held = header.data_bytes, header.held_bytes
    if expected > held:
        raise BadArray(
            f"array '{header.array}' is truncated: its header promises shape {header.shape} of {header.dtype} "
            f"({expected} bytes) but the file holds only {held} bytes of data; {SAVE_NPZ}"
        )
    if expected < held:
        raise BadArray(
            f"array '{header.array}' holds {held - expected} bytes more than its header's shape {header.shape} "
            f"of {header.dtype} describes; {SAVE_NPZ}"
        )


def read_member_header(archive: zipfile.ZipFile, member: zipfile.ZipInfo, array: str) -> NpyHeader:
    """read_header and check_data_size of one member; reads no array data."""
    with archive.open(member) as stream:
        header = read_header(stream, member, array)
    check_data_size(header)
    return header
