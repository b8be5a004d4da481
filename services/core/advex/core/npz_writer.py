"""Writes `.npz` files the way numpy.savez does (an uncompressed zip of
`.npy` members), but streamed and reproducible.

Streamed: a member's rows can be written as they arrive (adversarial images
batch by batch), so nothing holds a whole dataset. Reproducible: fixed zip
timestamps and member order, so the same arrays give the same bytes and
the same SHA-256. The file appears under its name only when complete: it is
written to a hidden partial name and renamed by `close`.

numpy only: the attack service (poisoned sets) and the gateway (kept
adversarial sets) both write through it.
"""

from __future__ import annotations

import os
import uuid
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class NpzWriter:
    """with NpzWriter(path) as npz: npz.add("y", labels); rows = npz.rows("x", np.float32, shape) ..."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._partial = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.partial")
        self._archive = zipfile.ZipFile(self._partial, "w", compression=zipfile.ZIP_STORED)
        self._open: "_Rows | None" = None

    def _member(self, name: str):
        if self._open is not None:
            raise RuntimeError(f"member '{self._open.name}' is still being written")
        info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        return self._archive.open(info, "w", force_zip64=True)

    def add(self, name: str, array: np.ndarray) -> None:
        """A whole array as member `name.npy`."""
        array = np.asarray(array)
        if not array.flags.c_contiguous:
            # (not for a scalar: ascontiguousarray makes it 1-d)
            array = np.ascontiguousarray(array)
        with self._member(name) as member:
            npy_format.write_array(member, array, allow_pickle=False)

    def rows(self, name: str, dtype, shape: tuple[int, ...]) -> "_Rows":
        """A member of the given full shape whose rows (axis 0) are written
        in order with `write`; `finish` checks every row came."""
        member = self._member(name)
        dtype = np.dtype(dtype)
        header = {"descr": npy_format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
        npy_format.write_array_header_2_0(member, header) if _needs_v2(header) else npy_format.write_array_header_1_0(
            member, header
        )
        self._open = _Rows(self, name, member, dtype, tuple(shape))
        return self._open

    def close(self) -> Path:
        if self._open is not None:
            raise RuntimeError(f"member '{self._open.name}' was not finished")
        self._archive.close()
        os.replace(self._partial, self.path)
        return self.path

    def abandon(self) -> None:
        try:
            if self._open is not None:
                self._open._member.close()
                self._open = None
            self._archive.close()
        except (OSError, ValueError, RuntimeError):
            pass
        self._partial.unlink(missing_ok=True)

    def __enter__(self) -> "NpzWriter":
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()


class _Rows:
    def __init__(self, writer: NpzWriter, name: str, member, dtype: np.dtype, shape: tuple[int, ...]):
        self.name = name
        self._writer, self._member, self._dtype, self._shape = writer, member, dtype, shape
        self.written = 0

    def write(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self._dtype)
        if rows.shape[1:] != self._shape[1:]:
            raise ValueError(f"{self.name}: rows of shape {rows.shape[1:]} where {self._shape[1:]} was declared")
        if self.written + len(rows) > self._shape[0]:
            raise ValueError(f"{self.name}: more than the {self._shape[0]} rows declared")
        self._member.write(rows.tobytes())
        self.written += len(rows)

    def finish(self) -> None:
        if self.written != self._shape[0]:
            raise ValueError(f"{self.name}: {self.written} rows written of the {self._shape[0]} declared")
        self._member.close()
        self._writer._open = None


def _needs_v2(header: dict) -> bool:
    """numpy writes format 1.0 unless the header outgrows it (as savez does)."""
    import io

    buffer = io.BytesIO()
    try:
        npy_format.write_array_header_1_0(buffer, header)
    except ValueError:
        return True
    return False


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Whole arrays to `path`, in the given order."""
    with NpzWriter(path) as npz:
        for name, array in arrays.items():
            npz.add(name, array)
    return Path(path)
