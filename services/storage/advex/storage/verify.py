"""Format checks for uploaded models, datasets and trigger patterns.

Nothing here runs code from the file: a `.keras` model is checked as a zip of
JSON and an HDF5 weights file (no Keras, no TensorFlow import), an `.npz`
dataset is read array header first, then streamed in blocks, never unpickled
and never held whole in memory, and an `.npz` trigger pattern is read header
first, then (bounded by PATTERN_MAX_ELEMENTS) whole without pickles. Sizes come from the zip's directory and from
each array's header before anything is decompressed, so a zip bomb or a
header that announces a huge array is refused before it expands.

Everything a summary reports (Keras version, class names, labels) is checked
to fit the Artifact message, so a READY record can always be sent.
"""

from __future__ import annotations

import codecs

import math
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy_format

from advex.core.errors import InvalidArgument, ResourceExhausted, printable, quoted
from advex.core.keras_archive import SAVE_MODEL, check_config, check_member_name, parse_json
from advex.core.npz_archive import SAVE_NPZ, DatasetTooLarge, check_data_size, check_images_budget, read_header
from advex.core.trigger_patterns import (
    PATTERN_MAX_ELEMENTS,
    SAVE_PATTERN,
    check_pattern_arrays,
    check_pattern_dtypes,
    check_pattern_shapes,
)

_BLOCK = 8 << 20
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_SIGNATURE = b"PK\x03\x04"


class VerificationError(InvalidArgument):
    """The uploaded file is not in the documented format; the message says why."""


class TooLarge(VerificationError, ResourceExhausted):
    """The file is well formed but bigger than this server accepts."""

    code = ResourceExhausted.code


# The largest dataset, as the float32 array of images the attack service
# makes of `x` (N*H*W*C*4 bytes), that is accepted by default.
DEFAULT_MAX_DATASET_BYTES = 4 * 1024**3
# Room for a member's npy header (or a model's JSON) next to its data.
_MEMBER_SLACK_BYTES = 1024**2
# Room for class_names (at most 100000 names of 200 characters) and headers.
_TOTAL_SLACK_BYTES = 128 * 1024**2

MAX_CLASS_NAMES = 100_000
MAX_CLASS_NAME_CHARS = 200
# All class names together, as UTF-8: they travel in every Artifact message.
MAX_CLASS_NAMES_BYTES = 1024**2
MAX_MODEL_CLASS_CHARS = 200
MAX_KERAS_VERSION_CHARS = 32
# "3.15.1", "3.4.0.dev2024061103", "3.0.0rc1", "3.6.0+local".
_KERAS_VERSION = re.compile(r"[0-9]+(\.[0-9]+){0,3}[a-z0-9.+-]{0,16}")
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class ZipLimits:
    """Bounds on what an uploaded archive may expand to.

    The defaults suit the default dataset limit; `for_models` and
    `for_datasets` derive them from the server's configuration."""

    max_members: int = 10_000
    max_member_bytes: int = 2 * DEFAULT_MAX_DATASET_BYTES + _MEMBER_SLACK_BYTES
    max_total_bytes: int = 4 * DEFAULT_MAX_DATASET_BYTES + _TOTAL_SLACK_BYTES
    # config.json and metadata.json are read whole.
    max_small_member_bytes: int = 64 * 1024**2
    # Largest accepted float32 size of `x`: prod(x.shape) * 4 bytes.
    max_dataset_bytes: int = DEFAULT_MAX_DATASET_BYTES

    @classmethod
    def for_models(cls, max_upload_bytes: int) -> ZipLimits:
        # Keras stores members uncompressed; weights deflate by far less than 4x.
        expanded = 4 * max_upload_bytes + _MEMBER_SLACK_BYTES
        return cls(max_member_bytes=expanded, max_total_bytes=expanded)

    @classmethod
    def for_datasets(cls, max_dataset_bytes: int) -> ZipLimits:
        # x as float64 is twice its float32 size; y as int64 at most as big
        # again (one label per image, every image at least one value).
        return cls(
            max_member_bytes=2 * max_dataset_bytes + _MEMBER_SLACK_BYTES,
            max_total_bytes=4 * max_dataset_bytes + _TOTAL_SLACK_BYTES,
            max_dataset_bytes=max_dataset_bytes,
        )

    @classmethod
    def for_patterns(cls) -> ZipLimits:
        # pattern and mask each hold at most PATTERN_MAX_ELEMENTS values of
        # at most 8 bytes (float64); a fixed bound, not a configured one.
        member = PATTERN_MAX_ELEMENTS * 8 + _MEMBER_SLACK_BYTES
        return cls(max_member_bytes=member, max_total_bytes=2 * member + _TOTAL_SLACK_BYTES)


@dataclass(frozen=True)
class ModelSummary:
    keras_version: str
    model_class: str
    # As Keras counts `model.layers`: a Sequential model's InputLayer is not one.
    layer_count: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSummary:
        return cls(**data)


@dataclass(frozen=True)
class DatasetSummary:
    samples: int
    image_shape: tuple[int, ...]
    dtype: str
    min_label: int
    max_label: int
    class_names: tuple[str, ...] = ()
    # Of x; None in summaries recorded before storage kept them.
    min_value: float | None = None
    max_value: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DatasetSummary:
        return cls(
            samples=data["samples"],
            image_shape=tuple(data["image_shape"]),
            dtype=data["dtype"],
            min_label=data["min_label"],
            max_label=data["max_label"],
            class_names=tuple(data.get("class_names", ())),
            min_value=data.get("min_value"),
            max_value=data.get("max_value"),
        )


@dataclass(frozen=True)
class PatternSummary:
    pattern_shape: tuple[int, ...]
    # As uploaded: (H, W) or (H, W, C), before it is broadcast to the pattern's channels.
    mask_shape: tuple[int, ...]
    # Of the pattern's values, in the data's input scale (e.g. 0..255 for uint8).
    min_value: float
    max_value: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PatternSummary:
        return cls(
            pattern_shape=tuple(data["pattern_shape"]),
            mask_shape=tuple(data["mask_shape"]),
            min_value=data["min_value"],
            max_value=data["max_value"],
        )


# What verification learned about an upload of any kind.
Summary = ModelSummary | DatasetSummary | PatternSummary


@contextmanager
def _open_archive(path: Path, what: str, how_to_save: str, limits: ZipLimits) -> Iterator[zipfile.ZipFile]:
    """Opens `path` as a zip after checking its directory against `limits`.

    Any zip-level failure inside the block (bad CRC, truncated member, unknown
    compression) becomes a VerificationError.
    """
    if not zipfile.is_zipfile(path):
        raise VerificationError(
            f"the file is not a {what}: it is not a complete zip archive (it may be truncated or "
            f"another format); {how_to_save}"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > limits.max_members:
                raise TooLarge(
                    f"the {what} holds {len(members)} files; at most {limits.max_members} are accepted"
                )
            total = 0
            seen: set[str] = set()
            for member in members:
                check_member_name(member.filename, what, how_to_save)
                if member.filename in seen:
                    # Readers disagree on which copy counts; checking one would not vouch for the other.
                    raise VerificationError(
                        f"the {what} holds two files named {quoted(member.filename)}; {how_to_save}"
                    )
                seen.add(member.filename)
                if member.flag_bits & 0x1:
                    raise VerificationError(
                        f"{quoted(member.filename)} in the {what} is encrypted; upload it unencrypted"
                    )
                if member.file_size > limits.max_member_bytes:
                    raise TooLarge(
                        f"{quoted(member.filename)} in the {what} expands to {member.file_size} bytes; "
                        f"at most {limits.max_member_bytes} are accepted"
                    )
                total += member.file_size
            if total > limits.max_total_bytes:
                raise TooLarge(
                    f"the {what} expands to {total} bytes; at most {limits.max_total_bytes} are accepted"
                )
            yield archive
    except VerificationError:
        raise
    except ResourceExhausted as error:
        # The same from advex.core's shared checks (a pattern's size).
        raise TooLarge(str(error)) from error
    except InvalidArgument as error:
        # What advex.core's shared checks refuse, with their message.
        raise VerificationError(str(error)) from error
    except (
        zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError, UnicodeDecodeError
    ) as error:
        raise VerificationError(f"the {what} is damaged and cannot be read ({error}); {how_to_save}") from error


def check_text(value: object, what: str, max_chars: int, fix: str) -> str:
    """`value` if it is a string that any client can receive: at most
    `max_chars` characters, valid UTF-8 (no lone surrogates), no control
    characters."""
    if not isinstance(value, str):
        raise VerificationError(f"{what} is not a string; {fix}")
    if len(value) > max_chars:
        raise VerificationError(f"{what} is {len(value)} characters long; at most {max_chars} are accepted; {fix}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise VerificationError(
            f"{what} ({quoted(value)}) is not valid Unicode text (it holds a lone surrogate); {fix}"
        ) from None
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise VerificationError(f"{what} ({quoted(value)}) contains control characters; {fix}")
    return value


def _read_small(archive: zipfile.ZipFile, name: str, what: str, limits: ZipLimits) -> bytes:
    info = archive.getinfo(name)
    if info.file_size > limits.max_small_member_bytes:
        raise TooLarge(
            f"'{name}' in the {what} is {info.file_size} bytes; at most {limits.max_small_member_bytes} are accepted"
        )
    return archive.read(name)


def _check_crc(archive: zipfile.ZipFile, name: str) -> bytes:
    """Reads member `name` to the end, which makes zipfile check its CRC;
    returns its first bytes."""
    head = b""
    with archive.open(name) as member:
        while block := member.read(_BLOCK):
            if not head:
                head = block[:16]
    return head


# ---------------------------------------------------------------- models

_MODEL = "Keras 3 .keras file"
_WEIGHTS_FILES = ("model.weights.h5", "model.weights.npz")


def verify_model(path: Path, limits: ZipLimits = ZipLimits()) -> ModelSummary:
    """Checks that `path` is a Keras 3 `.keras` archive without Python code.

    Required: config.json (a model config with no Lambda layer and no
    serialized function anywhere, nested models included, and every object
    it names taken from Keras itself: no custom or third-party classes, no
    layers that load outside code, no vocabularies read from paths),
    metadata.json (with a Keras version number), and model.weights.h5 (or
    .npz). Member names must be plain relative paths. Every member is read
    once so that a damaged archive fails here, not at evaluation time.
    """
    with _open_archive(path, _MODEL, SAVE_MODEL, limits) as archive:
        names = set(archive.namelist())
        missing = [n for n in ("config.json", "metadata.json") if n not in names]
        if not names.intersection(_WEIGHTS_FILES):
            missing.append("model.weights.h5")
        if missing:
            raise VerificationError(
                f"the file is a zip but not a {_MODEL}: it lacks {', '.join(missing)}; {SAVE_MODEL} "
                "(the legacy .h5 and SavedModel formats are not accepted)"
            )
        config = parse_json(_read_small(archive, "config.json", _MODEL, limits), "config.json")
        meta = parse_json(_read_small(archive, "metadata.json", _MODEL, limits), "metadata.json")
        if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
            raise VerificationError(f"config.json does not describe a Keras model (no class_name); {SAVE_MODEL}")
        check_config(config)
        model_class = check_text(
            config["class_name"], "the model class in config.json", MAX_MODEL_CLASS_CHARS, SAVE_MODEL
        )
        if not model_class.isprintable():
            raise VerificationError(
                f"the model class in config.json ({quoted(model_class)}) is not printable text; {SAVE_MODEL}"
            )
        keras_version = meta.get("keras_version") if isinstance(meta, dict) else None
        if not isinstance(keras_version, str) or not keras_version:
            raise VerificationError(f"metadata.json does not name the Keras version that saved it; {SAVE_MODEL}")
        if len(keras_version) > MAX_KERAS_VERSION_CHARS or not _KERAS_VERSION.fullmatch(keras_version):
            raise VerificationError(
                f"metadata.json names the Keras version {quoted(keras_version, 40)}, which is not a version "
                f"number like '3.15.1' (at most {MAX_KERAS_VERSION_CHARS} characters); {SAVE_MODEL}"
            )
        for name in sorted(names):
            head = _check_crc(archive, name)
            if name == "model.weights.h5" and not head.startswith(_HDF5_SIGNATURE):
                raise VerificationError(f"model.weights.h5 is not an HDF5 file; {SAVE_MODEL}")
            if name == "model.weights.npz" and not head.startswith(_ZIP_SIGNATURE):
                raise VerificationError(f"model.weights.npz is not an .npz file; {SAVE_MODEL}")
    body = config.get("config")
    if isinstance(body, dict):
        # What the attack service would refuse later, refused now: AdvEx
        # evaluates classifiers of one image input and one class-score
        # output. (The output's shape needs the model built: checked when an
        # evaluation is created.)
        for key, what in (("input_layers", "inputs"), ("output_layers", "outputs")):
            count = _tensor_count(body.get(key))
            if count > 1:
                raise VerificationError(
                    f"the model has {count} {what}; AdvEx evaluates classifiers with one image input and one "
                    "class-score output: save a model that takes one image batch and returns (batch, classes)"
                )
    layers = body.get("layers") if isinstance(body, dict) else None
    # A subclassed model lists no layers in its config.
    layers = layers if isinstance(layers, list) else []
    if config["class_name"] == "Sequential":
        layers = [item for item in layers if not (isinstance(item, dict) and item.get("class_name") == "InputLayer")]
    return ModelSummary(keras_version=keras_version, model_class=model_class, layer_count=len(layers))


def _tensor_count(value) -> int:
    """How many tensors a functional config's input_layers/output_layers
    names: Keras writes one as ["name", 0, 0], several as a list of those
    (or a dict of them); 0 when absent (Sequential, subclassed)."""
    if isinstance(value, dict):
        return len(value)
    if not isinstance(value, list) or not value:
        return 0
    if isinstance(value[0], str):
        return 1
    return len(value)


# -------------------------------------------------------------- datasets

_DATASET = ".npz dataset"


def _blocks(stream: IO[bytes], shape: tuple[int, ...], dtype: np.dtype, array: str) -> Iterator[np.ndarray]:
    """The array's elements, flat, in blocks (order does not matter to the checks)."""
    remaining = math.prod(shape) * dtype.itemsize
    step = max(dtype.itemsize, _BLOCK - _BLOCK % dtype.itemsize)
    while remaining:
        data = stream.read(min(step, remaining))
        if not data:
            raise VerificationError(
                f"array '{array}' is truncated: its header promises shape {shape} but the data ends early"
            )
        if len(data) % dtype.itemsize:
            data += stream.read(dtype.itemsize - len(data) % dtype.itemsize)
            if len(data) % dtype.itemsize:
                raise VerificationError(f"array '{array}' is truncated: its last element is incomplete")
        remaining -= len(data)
        yield np.frombuffer(data, dtype=dtype)


def _check_dataset_size(shape: tuple[int, ...], limits: ZipLimits) -> None:
    try:
        check_images_budget(shape, limits.max_dataset_bytes)
    except DatasetTooLarge as exc:
        raise TooLarge(str(exc)) from None


def verify_dataset(path: Path, limits: ZipLimits = ZipLimits()) -> DatasetSummary:
    """Checks that `path` is an `.npz` with the documented arrays.

    - `x`: images, 4-D (N, H, W, C), uint8 or float16/32/64, all values
      finite in float32. A 3-D (N, H, W) array is refused with the fix (add a
      channel axis) rather than silently reshaped, so every service sees the
      same shape. N*H*W*C*4 (x as float32) is at most
      `limits.max_dataset_bytes`.
    - `y`: N integer labels, all >= 0 and < 2**63.
    - `class_names` (optional): 1-D unicode strings, one per label value.
    Other members are ignored. Object arrays are refused from their header,
    so nothing is ever unpickled; every array's header is checked against
    the size of its data before the data is read.
    """
    with _open_archive(path, _DATASET, SAVE_NPZ, limits) as archive:
        names = set(archive.namelist())
        missing = [a for a in ("x", "y") if f"{a}.npy" not in names]
        if missing:
            found = sorted(printable(n.removesuffix(".npy"), 40) for n in names)[:20] or ["nothing"]
            raise VerificationError(
                f"the .npz has no array {' or '.join(repr(m) for m in missing)}; it needs x (N, H, W, C) images "
                f"and y (N,) integer labels (found: {', '.join(found)}); {SAVE_NPZ}"
            )

        with archive.open("x.npy") as stream:
            x = read_header(stream, archive.getinfo("x.npy"), "x")
            shape, dtype = x.shape, x.dtype
            if len(shape) == 3:
                raise VerificationError(
                    f"x has shape {shape}; images must be 4-D (N, H, W, C); for grey images add a channel axis: "
                    "x[..., None]"
                )
            if len(shape) != 4 or min(shape[1:]) < 1:
                raise VerificationError(f"x has shape {shape}; images must be 4-D (N, H, W, C)")
            if not (dtype == np.uint8 or (dtype.kind == "f" and dtype.itemsize <= 8)):
                raise VerificationError(
                    f"x has dtype {dtype}; images must be uint8, float16, float32 or float64"
                )
            if shape[0] < 1:
                raise VerificationError("x holds no images (N = 0); a dataset needs at least one sample")
            _check_dataset_size(shape, limits)
            check_data_size(x)
            float32_max = float(np.finfo(np.float32).max)
            low_value, high_value = math.inf, -math.inf
            for block in _blocks(stream, shape, dtype, "x"):
                if dtype.kind == "f" and not np.isfinite(block).all():
                    raise VerificationError("x contains NaN or infinite values; every pixel must be a finite number")
                if dtype.itemsize > 4 and np.abs(block).max() > float32_max:
                    raise VerificationError(
                        f"x contains values beyond float32's range (|v| > {float32_max:.4g}); attacks run in "
                        "float32; scale the images, e.g. to [0, 1] or [0, 255]"
                    )
                # As float32, the values attacks see.
                low_value = min(low_value, float(np.float32(block.min())))
                high_value = max(high_value, float(np.float32(block.max())))

        with archive.open("y.npy") as stream:
            y = read_header(stream, archive.getinfo("y.npy"), "y")
            y_shape, y_dtype = y.shape, y.dtype
            if y_shape != (shape[0],):
                raise VerificationError(
                    f"y has shape {y_shape} but x holds {shape[0]} images; y must be 1-D with one label per image"
                )
            if y_dtype.kind not in "iu":
                raise VerificationError(
                    f"y has dtype {y_dtype}; labels must be integers (e.g. y.astype(np.int64))"
                )
            check_data_size(y)
            low, high = math.inf, -math.inf
            for block in _blocks(stream, y_shape, y_dtype, "y"):
                low, high = min(low, int(block.min())), max(high, int(block.max()))
            if low < 0:
                raise VerificationError(f"y contains the label {low}; labels must be >= 0 (class indices)")
            if high > _INT64_MAX:
                raise VerificationError(
                    f"y contains the label {high}; labels are class indices and must be below 2**63; "
                    "save y as y.astype(np.int64) with labels 0..num_classes-1"
                )

        class_names: tuple[str, ...] = ()
        if "class_names.npy" in names:
            class_names = _read_class_names(archive)
            if high >= len(class_names):
                raise VerificationError(
                    f"y contains the label {high} but class_names lists only {len(class_names)} classes; "
                    "give one name per class"
                )

    return DatasetSummary(
        samples=shape[0],
        image_shape=tuple(int(d) for d in shape[1:]),
        dtype=dtype.name,
        min_label=int(low),
        max_label=int(high),
        class_names=class_names,
        min_value=low_value,
        max_value=high_value,
    )


def _read_class_names(archive: zipfile.ZipFile) -> tuple[str, ...]:
    fix = "save class_names with np.array(names, dtype=str), one short printable name per class"
    with archive.open("class_names.npy") as stream:
        header = read_header(stream, archive.getinfo("class_names.npy"), "class_names")
        shape, dtype = header.shape, header.dtype
        if dtype.kind != "U" or len(shape) != 1:
            raise VerificationError(
                f"class_names has dtype {dtype} and shape {shape}; it must be a 1-D string array: "
                "np.array(names, dtype=str)"
            )
        if shape[0] > MAX_CLASS_NAMES:
            raise TooLarge(f"class_names lists {shape[0]} names; at most {MAX_CLASS_NAMES} are accepted")
        chars = dtype.itemsize // 4
        if chars > MAX_CLASS_NAME_CHARS:
            raise TooLarge(
                f"class_names has dtype {dtype}: names of up to {chars} characters; at most "
                f"{MAX_CLASS_NAME_CHARS} characters per name are accepted; {fix}"
            )
        check_data_size(header)
        # Bounded above: at most MAX_CLASS_NAMES * MAX_CLASS_NAME_CHARS * 4 bytes.
        data = stream.read(math.prod(shape) * dtype.itemsize)
    try:
        values = np.frombuffer(data, dtype=dtype, count=shape[0]) if shape[0] else np.empty(0, dtype)
        names = tuple(str(v) for v in values)
    except (ValueError, TypeError, MemoryError, OverflowError) as error:
        raise VerificationError(f"array 'class_names' cannot be read ({printable(str(error))}); {fix}") from error
    total = 0
    for index, name in enumerate(names):
        total += len(check_text(name, f"class_names[{index}]", MAX_CLASS_NAME_CHARS, fix).encode("utf-8"))
    if total > MAX_CLASS_NAMES_BYTES:
        raise TooLarge(
            f"class_names hold {total} bytes of text; at most {MAX_CLASS_NAMES_BYTES} are accepted (they are sent "
            "with every listing of the dataset); use shorter names"
        )
    return names


# -------------------------------------------------------------- patterns

_PATTERN = ".npz trigger pattern"
_PATTERN_LIMITS = ZipLimits.for_patterns()


def verify_pattern(path: Path, limits: ZipLimits = _PATTERN_LIMITS) -> PatternSummary:
    """Checks that `path` is an `.npz` with a backdoor trigger.

    - `pattern`: (H, W, C), uint8 or float16/32/64, finite, in the input
      scale of the data it will be stamped on.
    - `mask`: (H, W) or (H, W, C) with the pattern's H and W and its C or 1
      channels, float16/32/64, uint8 or bool, values in 0..1.
    The rules are advex.core.trigger_patterns', which the attack service
    applies again when it loads the pattern. Other members are ignored.
    Shapes and dtypes come from the npy headers and are checked, with the
    size those headers announce, before any data is decompressed; object
    arrays are refused from their header, and the arrays are read with
    allow_pickle=False.
    """
    with _open_archive(path, _PATTERN, SAVE_PATTERN, limits) as archive:
        names = set(archive.namelist())
        missing = [a for a in ("pattern", "mask") if f"{a}.npy" not in names]
        if missing:
            found = sorted(printable(n.removesuffix(".npy"), 40) for n in names)[:20] or ["nothing"]
            raise VerificationError(
                f"the .npz has no array {' or '.join(repr(m) for m in missing)}; a trigger needs pattern (H, W, C) "
                f"and mask (H, W) with values in 0..1 (found: {', '.join(found)}); {SAVE_PATTERN}"
            )
        headers = {}
        for array in ("pattern", "mask"):
            with archive.open(f"{array}.npy") as stream:
                headers[array] = read_header(stream, archive.getinfo(f"{array}.npy"), array)
        # Shapes (and with them the size) first: a header announcing a huge
        # array is refused here, before check_data_size calls it truncated.
        check_pattern_shapes(headers["pattern"].shape, headers["mask"].shape)
        check_pattern_dtypes(headers["pattern"].dtype, headers["mask"].dtype)
        for header in headers.values():
            check_data_size(header)
        arrays = {array: _read_small_array(archive, array) for array in ("pattern", "mask")}
        # Raises BadPattern (an InvalidArgument), which _open_archive turns into a VerificationError.
        pattern, _ = check_pattern_arrays(arrays["pattern"], arrays["mask"])
    return PatternSummary(
        pattern_shape=tuple(int(d) for d in pattern.shape),
        mask_shape=tuple(int(d) for d in arrays["mask"].shape),
        min_value=float(pattern.min()),
        max_value=float(pattern.max()),
    )


def _read_small_array(archive: zipfile.ZipFile, array: str) -> np.ndarray:
    """Member `{array}.npy`, whose header was checked (shape bounded, no
    objects, size matching the member), read whole without unpickling."""
    with archive.open(f"{array}.npy") as stream:
        try:
            value = npy_format.read_array(stream, allow_pickle=False)
        except (ValueError, TypeError, OverflowError, MemoryError, EOFError) as error:
            raise VerificationError(
                f"array '{array}' cannot be read ({printable(str(error))}); {SAVE_PATTERN}"
            ) from error
        # To the member's end, so that zipfile checks its CRC.
        stream.read()
    return value


# -------------------------------------------------------------- report pages

# The start every AdvEx report page has (scoring's html_report.py writes it).
REPORT_PAGE_START = b"<!DOCTYPE html>"


def verify_report(path: Path, limits: ZipLimits | None = None) -> None:
    """Checks that `path` is a report page: UTF-8 text starting with
    <!DOCTYPE html>. Pages are made by the gateway (through scoring), not
    uploaded by users; there is nothing to summarise."""
    with open(path, "rb") as file:
        start = file.read(len(REPORT_PAGE_START))
        if start.upper() != REPORT_PAGE_START.upper():
            raise VerificationError("a report page must be an HTML document starting with <!DOCTYPE html>")
        file.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            while block := file.read(1 << 20):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise VerificationError("a report page must be UTF-8 text") from None


# -------------------------------------------------------------- outcomes

# An evaluation's per-sample results are at most 2 MiB of bits; with the
# npz's own bytes, far below this.
MAX_OUTCOMES_BYTES = 64 * 2**20


def verify_outcomes(path: Path, limits: ZipLimits | None = None) -> None:
    """Checks that `path` is an outcomes npz as the gateway writes it:
    `samples` (int64 scalar), `clean_correct` (uint8, ceil(samples / 8))
    and `adversarial_correct` (uint8, (attacks, ceil(samples / 8))). Read
    with numpy without pickles; small by construction."""
    if path.stat().st_size > MAX_OUTCOMES_BYTES:
        raise TooLarge(f"an outcomes file is at most {MAX_OUTCOMES_BYTES} bytes")
    try:
        with zipfile.ZipFile(path) as archive:
            packed = [i for i in archive.infolist() if i.compress_type != zipfile.ZIP_STORED]
    except (zipfile.BadZipFile, OSError):
        raise VerificationError("an outcomes file must be an .npz (a zip of .npy members)") from None
    if packed:
        # Stored members are as large as the file says: nothing inflates.
        raise VerificationError("an outcomes file's members are stored, not compressed (numpy.savez)")
    try:
        with np.load(path, allow_pickle=False) as data:
            members = {name: data[name] for name in data.files}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is simply not valid
        raise VerificationError(f"an outcomes file must be an .npz numpy can read without pickles ({exc})") from None
    if sorted(members) != ["adversarial_correct", "clean_correct", "samples"]:
        raise VerificationError("an outcomes file holds exactly samples, clean_correct and adversarial_correct")
    samples, clean, adversarial = members["samples"], members["clean_correct"], members["adversarial_correct"]
    if samples.shape != () or samples.dtype != np.int64 or int(samples) < 1:
        raise VerificationError("outcomes: samples must be one int64 >= 1")
    width = (int(samples) + 7) // 8
    if clean.dtype != np.uint8 or clean.shape != (width,):
        raise VerificationError(f"outcomes: clean_correct must be uint8 of shape ({width},)")
    if adversarial.dtype != np.uint8 or adversarial.ndim != 2 or adversarial.shape[1] != width:
        raise VerificationError(f"outcomes: adversarial_correct must be uint8 of shape (attacks, {width})")


# -------------------------------------------------------------- shards

# What a shard file (as the gateway writes it) may hold: one attack's
# per-sample records on a range of samples, the report's example images of
# that range, and (when the evaluation keeps them) its adversarial images.
SHARD_MEMBERS = {
    "first_sample": "i", "labels": "i", "targets": "i",
    "clean_probabilities": "f", "adversarial_probabilities": "f",
    "perturbation_linf": "f", "perturbation_l2": "f", "perturbation_l0": "f",
    "example_samples": "i", "example_labels": "i", "example_clean_predictions": "i",
    "example_adversarial_predictions": "i", "example_clean": "f", "example_adversarial": "f",
    "adversarial_images": "f",
}
SHARD_REQUIRED = ("first_sample", "labels", "clean_probabilities", "adversarial_probabilities",
                  "perturbation_linf", "perturbation_l2", "perturbation_l0")


def verify_shard(path: Path, limits: ZipLimits = ZipLimits()) -> None:
    """Checks that `path` is a shard npz as the gateway writes it: only the
    members of SHARD_MEMBERS, each a numeric array of its kind (read from
    its header: nothing is loaded, nothing unpickled), the records all of
    one length. Made by AdvEx; a user cannot upload one (the gateway refuses)."""
    how = "shard files are made by AdvEx for a running evaluation"
    with _open_archive(path, "shard file", how, limits) as archive:
        headers = {}
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if name not in SHARD_MEMBERS or not info.filename.endswith(".npy"):
                raise VerificationError(f"a shard file holds no member {quoted(info.filename)}; {how}")
            with archive.open(info) as stream:
                headers[name] = read_header(stream, info, name)
            check_data_size(headers[name])
    missing = [m for m in SHARD_REQUIRED if m not in headers]
    if missing:
        raise VerificationError(f"a shard file lacks {', '.join(missing)}; {how}")
    for name, header in headers.items():
        if header.dtype.kind not in ("iu" if SHARD_MEMBERS[name] == "i" else "f"):
            raise VerificationError(f"shard member {name} has dtype {header.dtype}; {how}")
    rows = headers["labels"].shape[:1]
    for name in SHARD_REQUIRED[1:] + tuple(n for n in ("targets", "adversarial_images") if n in headers):
        if headers[name].shape[:1] != rows:
            raise VerificationError(f"shard member {name} has {headers[name].shape[:1]} rows, labels {rows}; {how}")
