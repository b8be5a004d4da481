"""Labelled image datasets in the documented npz format, and their checks.

An npz holds `x` (N, H, W, C) or (N, H, W) as uint8 or float, and `y` (N,)
integer labels; `class_names` is optional. It is read with
allow_pickle=False, so it can never carry code. Samples are handed out by
range [start, stop), so a lazy reader for datasets larger than memory can
replace the in-memory one without changing callers.

An npz is a zip, so a few MB can inflate to many GB: each array's npy header
is read first (`advex.core.npz_archive`, the reader storage uses too), and
the dataset is refused before any array is read when a header holds Python
objects or announces more or less data than its member holds, when its
images as float32 exceed `max_bytes` (ADVEX_MAX_DATASET_BYTES, the variable
and measure storage checks uploads against), or when y is not one label per
image.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from advex.core.errors import InvalidArgument, ResourceExhausted
from advex.core.npz_archive import NpyHeader, check_images_budget, read_member_header
from advex.attack.models import ModelSummary, out_of_memory

DEFAULT_MAX_DATASET_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray  # float32 (N, H, W, C)
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
        return self.x[start:stop], self.y[start:stop]


def load_dataset(path: str | Path, max_bytes: int = DEFAULT_MAX_DATASET_BYTES) -> Dataset:
    def check(headers: dict[str, NpyHeader]) -> None:
        _check_budget(headers["x"].shape, headers["y"].shape, max_bytes)

    arrays = read_npz(
        path,
        ("x", "y"),
        "the dataset",
        "save it with numpy.savez(path, x=..., y=...)",
        "it must hold x (images) and y (labels)",
        check,
        "use fewer samples or split it into several datasets",
    )
    return from_arrays(arrays["x"], arrays["y"])


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
    try:
        with zipfile.ZipFile(path) as archive:
            members = _members(archive, what, how_to_save)
            missing = [name for name in names if name not in members]
            if missing:
                raise InvalidArgument(
                    f"{what} npz lacks array(s) {', '.join(missing)}; {what_it_holds}, "
                    f"it holds {', '.join(sorted(members)) or 'nothing'}"
                )
            check_headers({name: read_member_header(archive, members[name], name) for name in names})
            return {name: _read_array(archive, members[name]) for name in names}
    except (InvalidArgument, ResourceExhausted):
        raise
    except MemoryError:
        raise out_of_memory(what, smaller) from None
    except ValueError as exc:
        # Object arrays never get here: their headers are refused (and read_array has allow_pickle=False).
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
    """Checks images and labels in the documented layout and converts x to float32."""
    if x.ndim == 3:
        # (N, H, W) greyscale: one channel.
        x = x[..., None]
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
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise InvalidArgument("dataset x contains NaN or infinite values")
    return Dataset(
        x=x,
        y=y.astype(np.int64, copy=False),
        source_dtype=source_dtype,
        min_value=float(x.min()),
        max_value=float(x.max()),
    )


def check_compatible(model: ModelSummary, dataset: Dataset, clip_min: float, clip_max: float) -> None:
    """InvalidArgument, saying what to fix, unless `dataset` can be attacked on `model`."""
    image, expected = dataset.image_shape, model.input_shape
    if len(image) != len(expected) or any(e is not None and e != d for d, e in zip(image, expected)):
        raise InvalidArgument(
            f"dataset images are {_shape(image)} but the model expects {_shape(expected)} inputs; "
            "resize the images or choose the model they were made for"
        )
    if dataset.min_label < 0 or dataset.max_label >= model.num_classes:
        raise InvalidArgument(
            f"labels {dataset.min_label}..{dataset.max_label} are outside the model's {model.num_classes} "
            f"classes (0..{model.num_classes - 1}); labels must be class indices of the model's output"
        )
    if dataset.min_value < clip_min or dataset.max_value > clip_max:
        hint = f"pass clip_max={_num(dataset.max_value)}" if dataset.max_value > clip_max else (
            f"pass clip_min={_num(dataset.min_value)}"
        )
        raise InvalidArgument(
            f"dataset values span {_num(dataset.min_value)}..{_num(dataset.max_value)} but the clip range is "
            f"{_num(clip_min)}..{_num(clip_max)}; {hint} or rescale the images to the range the model was trained on"
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


def _shape(shape: tuple[int | None, ...]) -> str:
    return "x".join("any" if d is None else str(d) for d in shape)


def _num(value: float) -> str:
    return f"{value:g}"
