"""Checks the evasion and poisoning accumulators share: header bounds, the
arrays of one batch, and the bookkeeping of which samples arrived.

Pure numpy: no protobuf, no gRPC. Every failure is an InvalidArgument whose
message starts with `where` (which attack or model, which records) and says
what to fix. `unit` ("attack", "model") names what each sample is delivered
once per.
"""

from __future__ import annotations

import numpy as np

from advex.core.errors import InvalidArgument

# Softmax outputs lie in [0, 1]; the slack forgives float16 rounding while
# still catching logits sent by mistake.
PROBABILITY_SLACK = 1e-3


def header_samples(samples: int, max_samples: int | None) -> int:
    """The header's sample count, checked against the service's limit (None: no limit)."""
    if max_samples is None:
        if samples < 1:
            raise InvalidArgument(f"the header's samples must be at least 1, got {samples:,}")
    elif not 1 <= samples <= max_samples:
        raise InvalidArgument(f"the header's samples must be between 1 and {max_samples:,}, got {samples:,}")
    return int(samples)


def header_num_classes(num_classes: int) -> int:
    if num_classes < 2:
        raise InvalidArgument(f"the header's num_classes must be at least 2, got {num_classes}")
    return int(num_classes)


def label_store(samples: int, num_classes: int) -> np.ndarray:
    """Labels as first delivered, -1 = not yet seen. The smallest type that
    holds every class keeps this at 1-4 bytes a sample."""
    label_type = np.int8 if num_classes <= 127 else np.int16 if num_classes <= 32767 else np.int32
    return np.full(samples, -1, dtype=label_type)


def labels(where: str, values, field: str = "labels") -> np.ndarray:
    """Labels (or targets) of shape (n,) and an integer type."""
    values = np.asarray(values)
    if values.ndim != 1:
        raise InvalidArgument(f"{where}: {field} must have shape (n,), got {values.shape}")
    if values.dtype.kind not in "iu":
        raise InvalidArgument(f"{where}: {field} must be integers (int64), got {values.dtype}")
    return values


def probabilities(where: str, field: str, values, n: int, num_classes: int) -> np.ndarray:
    """Floats of shape (n, num_classes), finite and in 0..1 (give or take the slack)."""
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[0] != n:
        raise InvalidArgument(
            f"{where}: {field} must have shape ({n}, {num_classes}) to match {n} labels, got {values.shape}"
        )
    if values.shape[1] != num_classes:
        raise InvalidArgument(
            f"{where}: {field} has {values.shape[1]} columns but the header says num_classes = {num_classes}"
        )
    if values.dtype.kind != "f":
        raise InvalidArgument(f"{where}: {field} must be floats (float32), got {values.dtype}")
    if n and not (
        np.isfinite(values).all() and values.min() >= -PROBABILITY_SLACK and values.max() <= 1 + PROBABILITY_SLACK
    ):
        raise InvalidArgument(
            f"{where}: {field} must be softmax probabilities (finite, in 0..1); apply softmax to logits before sending"
        )
    return values


def sample_range(where: str, first: int, n: int, samples: int) -> None:
    """Samples [first, first + n) lie inside the header's samples."""
    if first < 0 or first + n > samples:
        raise InvalidArgument(
            f"{where}: records for samples {first}..{first + n - 1} fall outside the header's "
            f"{samples} samples (0..{samples - 1})"
        )


def label_range(where: str, values: np.ndarray, num_classes: int, field: str = "labels") -> None:
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        bad = values[(values < 0) | (values >= num_classes)][0]
        raise InvalidArgument(
            f"{where}: {field[:-1]} {int(bad)} is outside 0..{num_classes - 1} (num_classes = {num_classes})"
        )


def not_delivered_before(where: str, delivered: np.ndarray, first: int, unit: str) -> None:
    """`delivered` is the slice of this attack's or model's seen-flags for the batch."""
    seen = np.flatnonzero(delivered)
    if seen.size:
        raise InvalidArgument(
            f"{where}: sample {first + int(seen[0])} was delivered twice; send each sample once per {unit}"
        )


def labels_agree(where: str, known: np.ndarray, values: np.ndarray, first: int, unit: str) -> None:
    """`known` is the slice of the label store for the batch (-1 = unseen)."""
    clash = np.flatnonzero((known >= 0) & (known != values))
    if clash.size:
        k = int(clash[0])
        raise InvalidArgument(
            f"{where}: sample {first + k} has label {int(values[k])}, but another {unit} "
            f"delivered label {int(known[k])} for it; every {unit} must score the same "
            f"samples with the same labels"
        )


def all_delivered(name: str, received: int, samples: int, unseen: np.ndarray) -> None:
    """InvalidArgument naming the first gap unless all `samples` arrived.
    `unseen` is a boolean mask, True where a sample never arrived."""
    if received == samples:
        return
    missing = np.flatnonzero(unseen)
    start = int(missing[0])
    end = start + int(np.argmax(np.diff(missing, append=missing[-1] + 2) != 1))
    raise InvalidArgument(
        f"{name} has {received} of {samples} samples; samples {start}..{end} (and maybe more) never arrived"
    )
