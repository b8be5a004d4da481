"""Labelled image datasets in the documented npz format, and their checks.

An npz holds `x` (N, H, W, C) or (N, H, W) as uint8 or float, and `y` (N,)
integer labels; `class_names` is optional. It is read with
allow_pickle=False, so it can never carry code. Samples are handed out by
range [start, stop) as float32 (`Dataset.batch`).

A dataset file is never read whole into memory (`load_dataset`): the labels
are (8 bytes a sample), but the images stay on disk in the dtype they were
saved in, read a batch of rows at a time (`DiskImages`, pread): straight
from the npz when its `x` member is stored uncompressed (numpy.savez), or
from a copy decompressed in chunks beside it when the member is deflated
(numpy.savez_compressed). One streaming pass checks the values are finite
and finds their range. So the attack service's memory does not grow with
the dataset: a batch at a time is read and cast to float32.

An npz is a zip, so a few MB can inflate to many GB: each array's npy header
is read first (`advex.core.npz_archive`, the reader storage uses too), and
the dataset is refused before any array is read when a header holds Python
objects or announces more or less data than its member holds, when its
images as float32 exceed `max_bytes` (ADVEX_MAX_DATASET_BYTES, the variable
and measure storage checks uploads against), or when y is not one label per
image.
"""

from __future__ import annotations

import math
import os
import struct
import uuid
import zipfile
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from advex.core import compatibility
from advex.core.errors import InvalidArgument, ResourceExhausted
from advex.core.npz_archive import NpyHeader, check_images_budget, read_member_header
from advex.attack.models import ModelSummary, out_of_memory

DEFAULT_MAX_DATASET_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class Dataset:
    # (N, H, W, C): float32 in memory (from_arrays), or DiskImages in the
    # file's dtype (load_dataset); `batch` casts.
    x: np.ndarray
    y: np.ndarray  # int64 (N,)
    source_dtype: str  # dtype of `x` in the file
    min_value: float
    max_value: float

    @property
    def samples(self) -> int:
        return int(self.x.shape[0])

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])

    @property
    def min_label(self) -> int:
        return int(self.y.min())

    @property
    def max_label(self) -> int:
        return int(self.y.max())

    def batch(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(images float32, labels int64) of samples [start, stop)."""
        return np.asarray(self.x[start:stop], dtype=np.float32), self.y[start:stop]


_DATASET = "the dataset"
_SAVE_DATASET = "save it with numpy.savez(path, x=..., y=...)"
_SMALLER = "use fewer samples or split it into several datasets"
# Bytes of images checked (finite, range) per step of the streaming pass.
_SCAN_BYTES = 64 * 1024**2


def load_dataset(path: str | Path, max_bytes: int = DEFAULT_MAX_DATASET_BYTES) -> Dataset:
    """The dataset in the npz at `path`, its images left on disk (see the
    module's docstring); a deflated `x` is first decompressed in chunks to
    `<path>.x.raw` (kept: the path names the file's content)."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise InvalidArgument(f"{_DATASET} is not a readable npz file (not a zip archive); {_SAVE_DATASET}")
    with _npz_errors(_DATASET, _SAVE_DATASET, _SMALLER), zipfile.ZipFile(path) as archive:
        members = _required(archive, ("x", "y"), _DATASET, _SAVE_DATASET, "it must hold x (images) and y (labels)")
        headers = {name: read_member_header(archive, members[name], name) for name in ("x", "y")}
        _check_budget(headers["x"].shape, headers["y"].shape, max_bytes)
        y = _read_array(archive, members["y"])
        x_member, x_header = members["x"], headers["x"]
        if x_member.compress_type == zipfile.ZIP_STORED:
            offset, source = _stored_data_offset(path, x_member) + x_header.data_offset, path
        else:
            offset, source = 0, _decompressed(archive, x_member, x_header, path.with_name(path.name + ".x.raw"))
        x = _map(source, offset, x_header)
        return _checked(x, y, scan=True)


def _stored_data_offset(path: Path, member: zipfile.ZipInfo) -> int:
    """Where an uncompressed member's bytes start in the file: after its
    local header (30 bytes, the name, the extra field; read from the local
    header itself, whose extra field may differ from the central one)."""
    with open(path, "rb") as f:
        f.seek(member.header_offset)
        local = f.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise InvalidArgument(f"{_DATASET} npz has a damaged entry for {member.filename}; {_SAVE_DATASET}")
    name_length, extra_length = struct.unpack("<HH", local[26:30])
    return member.header_offset + 30 + name_length + extra_length


def _decompressed(archive: zipfile.ZipFile, member: zipfile.ZipInfo, header: NpyHeader, target: Path) -> Path:
    """The member's data (after its npy header), inflated in chunks to
    `target`, unless an earlier request did it already."""
    if target.is_file() and target.stat().st_size == header.data_bytes:
        return target
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    try:
        with archive.open(member) as stream, open(partial, "wb") as out:
            stream.read(header.data_offset)
            while block := stream.read(_SCAN_BYTES):
                out.write(block)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _map(source: Path, offset: int, header: NpyHeader):
    if header.data_bytes == 0:
        return np.zeros(header.shape, dtype=header.dtype)
    if header.fortran_order:
        # Rows of a Fortran-ordered array are not contiguous on disk: map it
        # (its pages then count in the service's RSS; numpy.savez writes C).
        return np.memmap(source, dtype=header.dtype, mode="r", offset=offset, shape=header.shape, order="F")
    return DiskImages(source, offset, header.dtype, header.shape)


class DiskImages:
    """Images on disk, read by rows with pread: what a batch needs is read
    when asked for, and nothing stays mapped, so the pages read count in the
    kernel's page cache, not in the service's resident memory (a memory map
    would grow its RSS by the whole dataset as an attack walks through it)."""

    def __init__(self, path: Path, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self.path, self.offset, self.dtype, self.shape = path, offset, np.dtype(dtype), tuple(shape)
        self.ndim = len(self.shape)
        self._row_bytes = self.dtype.itemsize * math.prod(self.shape[1:])
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self[int(index) : int(index) + 1][0]
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("DiskImages reads contiguous row ranges only")
        start, stop, _ = index.indices(self.shape[0])
        count = max(0, stop - start)
        rows = np.empty((count, *self.shape[1:]), dtype=self.dtype)
        wanted = count * self._row_bytes
        read = os.preadv(self._fd, [memoryview(rows).cast("B")], self.offset + start * self._row_bytes) if wanted else 0
        if read != wanted:
            raise InvalidArgument(f"{_DATASET} file ended early, at row {start + read // self._row_bytes}")
        return rows

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)


def read_npz(
    path: str | Path,
    names: tuple[str, ...],
    what: str,
    how_to_save: str,
    what_it_holds: str,
    check_headers: Callable[[dict[str, NpyHeader]], None],
    smaller: str,
) -> dict[str, np.ndarray]:
    """The arrays `names` of a user's npz, never unpickled. `check_headers`
    sees their npy headers (shape, dtype) before any data is read, so it can
    refuse what is too big or the wrong shape; everything else wrong with the
    file is an InvalidArgument naming `what` and `how_to_save` it."""
    # np.load reads any non-zip file as .npy or a pickle: only npz is accepted.
    if not zipfile.is_zipfile(path):
        raise InvalidArgument(f"{what} is not a readable npz file (not a zip archive); {how_to_save}")
    with _npz_errors(what, how_to_save, smaller), zipfile.ZipFile(path) as archive:
        members = _required(archive, names, what, how_to_save, what_it_holds)
        check_headers({name: read_member_header(archive, members[name], name) for name in names})
        return {name: _read_array(archive, members[name]) for name in names}


def _required(archive, names, what: str, how_to_save: str, what_it_holds: str) -> dict[str, zipfile.ZipInfo]:
    """The archive's members, InvalidArgument unless `names` are among them."""
    members = _members(archive, what, how_to_save)
    missing = [name for name in names if name not in members]
    if missing:
        raise InvalidArgument(
            f"{what} npz lacks array(s) {', '.join(missing)}; {what_it_holds}, "
            f"it holds {', '.join(sorted(members)) or 'nothing'}"
        )
    return members


@contextmanager
def _npz_errors(what: str, how_to_save: str, smaller: str):
    """Whatever goes wrong reading a user's npz, as an error that says what
    to fix (object arrays never get here: their headers are refused, and
    arrays are read with allow_pickle=False)."""
    try:
        yield
    except (InvalidArgument, ResourceExhausted):
        raise
    except MemoryError:
        raise out_of_memory(what, smaller) from None
    except ValueError as exc:
        raise InvalidArgument(f"{what} is not a readable npz file: {exc}; {how_to_save}") from None
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error, RuntimeError, NotImplementedError) as exc:
        raise InvalidArgument(f"{what} is not a readable npz file ({exc}); {how_to_save}") from None


def _members(archive: zipfile.ZipFile, what: str, how_to_save: str) -> dict[str, zipfile.ZipInfo]:
    """Array name -> zip member, as numpy names them ("x.npy" is array x)."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        if name in members:
            raise InvalidArgument(f"{what} npz holds array {name!r} twice; {how_to_save}")
        members[name] = info
    return members


def _check_budget(x_shape: tuple[int, ...], y_shape: tuple[int, ...], max_bytes: int) -> None:
    # Labels are checked here too, so a huge y is not read either.
    samples = x_shape[0] if x_shape else 0
    if len(y_shape) != 1 or y_shape[0] != samples:
        raise InvalidArgument(f"dataset y has shape {y_shape}; it must be ({samples},): one label per image")
    check_images_budget(x_shape, max_bytes)


def _read_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    with archive.open(info) as f:
        return npy_format.read_array(f, allow_pickle=False)


def from_arrays(x: np.ndarray, y: np.ndarray) -> Dataset:
    """Checks images and labels in the documented layout and converts x to
    float32 (in memory: tests, poisoning's perturbed sets)."""
    return _checked(x, y, scan=False)


def _checked(x: np.ndarray, y: np.ndarray, scan: bool) -> Dataset:
    """The checks of the documented layout. `scan`: x is on disk and is
    checked in chunks, kept in its own dtype; else converted to float32."""
    if x.ndim == 3:
        # (N, H, W) greyscale: one channel.
        x = DiskImages(x.path, x.offset, x.dtype, (*x.shape, 1)) if isinstance(x, DiskImages) else x[..., None]
    if x.ndim != 4:
        raise InvalidArgument(f"dataset x has shape {x.shape}; it must be (N, H, W, C) or (N, H, W) images")
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise InvalidArgument(f"dataset x has dtype {x.dtype}; it must be uint8 or a float type")
    if x.shape[0] == 0:
        raise InvalidArgument("the dataset has no samples")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise InvalidArgument(f"dataset y has shape {y.shape}; it must be ({x.shape[0]},): one label per image")
    if not np.issubdtype(y.dtype, np.integer):
        raise InvalidArgument(f"dataset y has dtype {y.dtype}; labels must be integers (class indices)")
    source_dtype = str(x.dtype)
    if not scan:
        x = x.astype(np.float32, copy=False)
    low, high = _value_range(x)
    return Dataset(
        x=x, y=y.astype(np.int64, copy=False), source_dtype=source_dtype, min_value=low, max_value=high
    )


def _value_range(x: np.ndarray) -> tuple[float, float]:
    """(min, max) of x, read in chunks; InvalidArgument on NaN or infinity."""
    rows = max(1, _SCAN_BYTES // max(1, x[0].nbytes))
    low, high = np.inf, -np.inf
    for start in range(0, x.shape[0], rows):
        part = np.asarray(x[start : start + rows])
        if part.dtype.kind == "f" and not np.all(np.isfinite(part)):
            raise InvalidArgument("dataset x contains NaN or infinite values")
        # As float32, the values batches hold (as storage records them).
        low, high = min(low, float(np.float32(part.min()))), max(high, float(np.float32(part.max())))
    return low, high


def check_compatible(model: ModelSummary, dataset: Dataset, clip_min: float, clip_max: float) -> None:
    """InvalidArgument, saying what to fix, unless `dataset` can be attacked on `model`."""
    compatibility.check(
        model.input_shape, model.num_classes, dataset.image_shape, dataset.min_label, dataset.max_label,
        dataset.min_value, dataset.max_value, clip_min, clip_max,
    )


def resolve_range(dataset: Dataset, start: int, stop: int) -> tuple[int, int]:
    """[start, stop) checked against the dataset; stop 0 means its end."""
    n = dataset.samples
    stop = n if stop == 0 else stop
    if not 0 <= start < stop <= n:
        raise InvalidArgument(
            f"sample range [{start}, {stop}) is not inside the dataset's {n} samples; "
            f"use 0 <= start < stop <= {n} (stop 0 means {n})"
        )
    return start, stop
