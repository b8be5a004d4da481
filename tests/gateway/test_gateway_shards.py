"""Shards as units (gateway/shards.py): the plan, and the replay that makes
scoring's stream the same whatever the split."""

from __future__ import annotations

import numpy as np
import pytest

from advex.core import examples, tensors
from advex.gateway import shards


def test_the_plan_covers_every_sample_of_every_attack_once():
    plan = shards.plan(attacks=2, samples=359, shard_samples=128)
    assert plan == [(0, 0, 128), (0, 128, 256), (0, 256, 359), (1, 0, 128), (1, 128, 256), (1, 256, 359)]
    assert shards.aligned(100, 32) == 128 and shards.aligned(100, 0) == 100 and shards.aligned(64, 32) == 64


def _shard(first, n, classes=3, rng=np.random.default_rng(0), picks=()):
    probabilities = rng.dirichlet(np.ones(classes), size=n).astype(np.float32)
    arrays = dict(
        first_sample=np.array(first), labels=np.arange(first, first + n) % classes,
        clean_probabilities=probabilities, adversarial_probabilities=probabilities[::-1].copy(),
        perturbation_linf=np.full(n, 0.1, np.float32), perturbation_l2=np.arange(n, dtype=np.float32),
        perturbation_l0=np.ones(n, np.float32),
    )
    if picks:
        samples, labels, clean, adversarial = zip(*picks)
        arrays.update(
            example_samples=np.array(samples), example_labels=np.array(labels),
            example_clean_predictions=np.array(clean), example_adversarial_predictions=np.array(adversarial),
            example_clean=np.zeros((len(picks), 2, 2, 1), np.float16),
            example_adversarial=np.zeros((len(picks), 2, 2, 1), np.float16),
        )
    return arrays


def _stream(parts, rows=16):
    replay = shards.Replay(0, rows, (2, 2, 1), targeted=False)
    messages = [m for part in parts for m in replay.add(part)] + list(replay.finish())
    return [m.SerializeToString(deterministic=True) for m in messages]


@pytest.mark.parametrize("cuts", [[23, 50], [10, 20, 30, 40], [16, 32, 48]])
def test_records_go_to_scoring_in_the_same_messages_whatever_the_split(cuts):
    whole = _shard(0, 60)
    bounds = [0, *cuts, 60]
    parts = [{k: (v[lo:hi] if v.ndim else np.array(lo)) for k, v in whole.items()} for lo, hi in zip(bounds, bounds[1:])]
    assert _stream(parts) == _stream([whole])
    firsts = []
    for message in _stream([whole]):
        from advex.internal.v1 import scoring_service_pb2

        request = scoring_service_pb2.ScoreEvasionRequest.FromString(message)
        firsts.append((request.records.records.first_sample, len(tensors.from_proto(request.records.records.labels))))
    assert firsts == [(0, 16), (16, 16), (32, 16), (48, 12)]  # at multiples of the rows, the rest last


def test_merged_picks_are_the_pick_of_the_whole_range():
    # (sample, label, clean prediction, adversarial prediction): 3 and 12
    # broke (clean right, adversarial wrong); 1 and 10 did not.
    first = _shard(0, 8, picks=[(3, 0, 0, 1), (1, 1, 1, 1)])
    second = _shard(8, 8, picks=[(12, 0, 0, 2), (10, 1, 1, 1)])
    replay = shards.Replay(0, 16, (2, 2, 1), targeted=False)
    replay.limit = 3
    for part in (first, second):
        list(replay.add(part))
    grid = [m for m in replay.finish() if m.HasField("examples")][0].examples.examples
    assert list(grid.samples) == [3, 12, 1]  # successes first, in order, then the first others
    assert examples.merge([[(True, "a"), (False, "b")], [(True, "c")]], 2) == ["a", "c"]
