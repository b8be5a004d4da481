"""The report's picture grid: which samples of an attack it shows.

The first samples the attack succeeded on, in sample order, topped up with
the first others; at most `example_limit(image_shape)`. The attack service
picks them from what it attacked (engine.ExamplePicker); the gateway merges
the picks of an evaluation's shards with `merge`, which gives exactly the
pick of the whole range: each shard keeps its own first `limit` successes
and enough of its first others, so the first `limit` of the concatenation
are among them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

# At most this many samples, and this many bytes of float16 images (clean
# and adversarial), under one 1 MiB message.
MAX_EXAMPLES = 8
MAX_EXAMPLE_BYTES = 768 * 1024


def example_limit(image_shape: Sequence[int]) -> int:
    per_sample = 2 * 2 * math.prod(int(d) for d in image_shape)
    return min(MAX_EXAMPLES, MAX_EXAMPLE_BYTES // max(1, per_sample))


def met_goal(label: int, clean_prediction: int, adversarial_prediction: int, target: int | None) -> bool:
    """Clean-correct, and then misclassified (untargeted) or classified as
    its target (targeted): the attack succeeded on the sample."""
    if clean_prediction != label:
        return False
    if target is None:
        return adversarial_prediction != label
    return label != target and adversarial_prediction == target


def merge(picks: Iterable[Sequence[tuple[bool, object]]], limit: int) -> list:
    """The pick of a whole range from the picks of its consecutive parts,
    each in sample order as (succeeded, example) pairs: the examples."""
    picks = list(picks)
    succeeded = [example for pick in picks for ok, example in pick if ok]
    others = [example for pick in picks for ok, example in pick if not ok]
    return (succeeded + others)[:limit]
