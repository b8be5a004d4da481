"""An evasion evaluation in shards: one attack on a range of samples each.

A run plans the shards once (`plan`, kept in SQL: jobs.shards), runs each
one that is not DONE as a RunEvasion call on that range, and stores what it
streamed back as a SHARD artifact (`ShardWriter`: the per-sample records,
the picture grid's pick, and the adversarial images when they are kept).
An interrupted evaluation therefore resumes from the shards it finished.

The report is made at the end from every shard, in order: `Replay` feeds
scoring the records in messages of a fixed number of rows at fixed sample
boundaries, and merges the shards' picks (advex.core.examples.merge), so
scoring sees exactly the same stream whatever the split, and per-sample
seeds make each sample's result independent of the range it ran in: the
report is the same for any shard size and any order the shards ran in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from advex.core import examples as picks
from advex.core import tensors
from advex.core.npz_writer import NpzWriter
from advex.internal.v1 import records_pb2, scoring_service_pb2
from advex.v1 import tensor_pb2

# Record fields, as EvasionRecords names them; `targets` only when targeted.
_RECORD_FIELDS = ("labels", "clean_probabilities", "adversarial_probabilities", "perturbation_linf",
                  "perturbation_l2", "perturbation_l0")
_EXAMPLE_FIELDS = ("samples", "labels", "clean_predictions", "adversarial_predictions")


def aligned(shard_samples: int, batch_size: int) -> int:
    """`shard_samples` rounded up to a multiple of the attack service's
    batch size (ModelInfo.batch_size; 0 from a replica that does not say):
    a sample then runs in the same batch whatever the split, and the model's
    float arithmetic, which depends on the batch, gives the same bits."""
    if batch_size <= 0:
        return shard_samples
    return -(-shard_samples // batch_size) * batch_size


def plan(attacks: int, samples: int, shard_samples: int) -> list[tuple[int, int, int]]:
    """(attack_index, first, stop) of every shard, attack by attack, in
    sample order: ranges of `shard_samples` (the last one shorter)."""
    return [
        (attack, first, min(first + shard_samples, samples))
        for attack in range(attacks)
        for first in range(0, samples, shard_samples)
    ]


class ShardWriter:
    """Collects one shard's RunEvasion stream and writes it as an npz
    (the SHARD artifact's format: storage.verify.verify_shard)."""

    def __init__(self, path: Path, first: int, stop: int, image_shape: tuple[int, ...] | None) -> None:
        self.path = path
        self.first, self.stop = first, stop
        self._records: list[records_pb2.EvasionRecords] = []
        self._examples: records_pb2.EvasionExamples | None = None
        self._npz = NpzWriter(path)
        # Images are many: they go to disk as they come; records are few
        # bytes per sample and wait in memory for the end.
        self._images = None if image_shape is None else self._npz.rows(
            "adversarial_images", np.float32, (stop - first, *image_shape)
        )
        self._chunks = tensors.ChunkAssembler()

    @property
    def keeps_images(self) -> bool:
        return self._images is not None

    def add_records(self, records: records_pb2.EvasionRecords) -> None:
        self._records.append(records)

    def add_examples(self, examples: records_pb2.EvasionExamples) -> None:
        self._examples = examples

    def add_images(self, chunk: tensor_pb2.TensorChunk) -> None:
        done = self._chunks.add(chunk)
        if done is not None and self._images is not None:
            first, images = done
            if first != self.first + self._images.written:
                raise ValueError(f"adversarial images of sample {first} arrived out of order")
            self._images.write(images)

    def finish(self) -> Path:
        if self._images is not None:
            self._images.finish()
        columns = {name: [tensors.from_proto(getattr(r, name)) for r in self._records] for name in _RECORD_FIELDS}
        rows = sum(len(part) for part in columns["labels"])
        if rows != self.stop - self.first:
            raise ValueError(f"the shard [{self.first}, {self.stop}) streamed {rows} records")
        self._npz.add("first_sample", np.array(self.first, dtype=np.int64))
        for name, parts in columns.items():
            self._npz.add(name, np.concatenate(parts))
        if self._records and self._records[0].HasField("targets"):
            self._npz.add("targets", np.concatenate([tensors.from_proto(r.targets) for r in self._records]))
        if self._examples is not None:
            for name in _EXAMPLE_FIELDS:
                self._npz.add(f"example_{name}", np.asarray(getattr(self._examples, name), dtype=np.int64))
            self._npz.add("example_clean", tensors.from_proto(self._examples.clean))
            self._npz.add("example_adversarial", tensors.from_proto(self._examples.adversarial))
        self._npz.close()
        return self.path

    def abandon(self) -> None:
        self._npz.abandon()


def versions_json(versions) -> str:
    return json.dumps(dict(versions), sort_keys=True)


@dataclass
class _Buffered:
    first: int
    columns: dict[str, np.ndarray]


class Replay:
    """One attack's shards, in sample order, as scoring's request stream:
    records in messages of `rows` rows starting at multiples of `rows`
    (whatever the shard split), then the merged picture grid."""

    def __init__(self, attack_index: int, rows: int, image_shape: tuple[int, ...], targeted: bool) -> None:
        self.attack_index = attack_index
        self.rows = rows
        self.limit = picks.example_limit(image_shape)
        self.targeted = targeted
        self._pending: _Buffered | None = None
        self._picks: list[list[tuple[bool, tuple]]] = []
        self._targets: dict[int, int] = {}

    def add(self, shard: dict[str, np.ndarray]):
        """The messages that shard `shard` (its npz's arrays) completes."""
        first = int(shard["first_sample"])
        fields = _RECORD_FIELDS + (("targets",) if self.targeted else ())
        columns = {name: shard[name] for name in fields}
        if self._pending is not None:
            if self._pending.first + len(self._pending.columns["labels"]) != first:
                raise ValueError(f"shards of attack {self.attack_index} are not consecutive at sample {first}")
            columns = {k: np.concatenate([self._pending.columns[k], v]) for k, v in columns.items()}
            first = self._pending.first
        self._pending = _Buffered(first, columns)
        self._keep_pick(shard)
        yield from self._emit(final=False)

    def finish(self):
        """The last records and the merged picture grid."""
        yield from self._emit(final=True)
        merged = picks.merge(self._picks, self.limit)
        if merged:
            samples, labels, clean_pred, adv_pred, clean, adversarial = zip(*merged)
            yield scoring_service_pb2.ScoreEvasionRequest(
                examples=scoring_service_pb2.ScoredExamples(
                    attack_index=self.attack_index,
                    examples=records_pb2.EvasionExamples(
                        samples=samples, labels=labels, clean_predictions=clean_pred,
                        adversarial_predictions=adv_pred,
                        clean=tensors.to_proto(np.stack(clean)), adversarial=tensors.to_proto(np.stack(adversarial)),
                    ),
                )
            )

    def _keep_pick(self, shard: dict[str, np.ndarray]) -> None:
        if "example_samples" not in shard:
            return
        first = int(shard["first_sample"])
        targets = shard.get("targets")
        pick = []
        for i, sample in enumerate(shard["example_samples"]):
            label, clean_pred, adv_pred = (int(shard[f"example_{f}"][i]) for f in _EXAMPLE_FIELDS[1:])
            target = None if targets is None else int(targets[int(sample) - first])
            pick.append((
                picks.met_goal(label, clean_pred, adv_pred, target),
                (int(sample), label, clean_pred, adv_pred, shard["example_clean"][i], shard["example_adversarial"][i]),
            ))
        self._picks.append(pick)

    def _emit(self, final: bool):
        pending = self._pending
        if pending is None:
            return
        n = len(pending.columns["labels"])
        lo = 0
        while lo < n:
            # Messages end at multiples of `rows` in sample numbers.
            hi = min(n, (pending.first + lo) // self.rows * self.rows + self.rows - pending.first)
            if hi == n and not final and (pending.first + hi) % self.rows:
                break  # an incomplete message: the next shard completes it
            part = {k: v[lo:hi] for k, v in pending.columns.items()}
            records = records_pb2.EvasionRecords(
                first_sample=pending.first + lo,
                **{k: tensors.to_proto(v) for k, v in part.items()},
            )
            yield scoring_service_pb2.ScoreEvasionRequest(
                records=scoring_service_pb2.ScoredRecords(attack_index=self.attack_index, records=records)
            )
            lo = hi
        rest = {k: v[lo:] for k, v in pending.columns.items()}
        self._pending = _Buffered(pending.first + lo, rest) if lo < n else None
