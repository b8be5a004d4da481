"""Does a dataset fit a model? The one rule, on metadata only.

TensorFlow-free: the attack service applies it to a loaded model and an
opened dataset, and the gateway, at CreateEvaluation, to the model's
description (InspectModel) and what storage recorded of the dataset at
upload, so a request is checked without the dataset being read.
"""

from __future__ import annotations

from collections.abc import Sequence

from advex.core.errors import InvalidArgument


def check(
    input_shape: Sequence[int | None],
    num_classes: int,
    image_shape: Sequence[int],
    min_label: int,
    max_label: int,
    min_value: float,
    max_value: float,
    clip_min: float,
    clip_max: float,
) -> None:
    """InvalidArgument, saying what to fix, unless images of `image_shape`
    with these label and value ranges can be attacked on the model."""
    image, expected = tuple(image_shape), tuple(input_shape)
    if len(image) != len(expected) or any(e is not None and e != d for d, e in zip(image, expected)):
        raise InvalidArgument(
            f"dataset images are {_shape(image)} but the model expects {_shape(expected)} inputs; "
            "resize the images or choose the model they were made for"
        )
    if min_label < 0 or max_label >= num_classes:
        raise InvalidArgument(
            f"labels {min_label}..{max_label} are outside the model's {num_classes} "
            f"classes (0..{num_classes - 1}); labels must be class indices of the model's output"
        )
    if min_value < clip_min or max_value > clip_max:
        hint = f"pass clip_max={max_value:g}" if max_value > clip_max else f"pass clip_min={min_value:g}"
        raise InvalidArgument(
            f"dataset values span {min_value:g}..{max_value:g} but the clip range is "
            f"{clip_min:g}..{clip_max:g}; {hint} or rescale the images to the range the model was trained on"
        )


def _shape(shape) -> str:
    return "x".join("any" if d is None else str(d) for d in shape)
