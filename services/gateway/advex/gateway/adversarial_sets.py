"""Kept adversarial examples (EvasionSpec.keep_adversarial): one dataset
artifact per attack, written at the gateway as RunEvasion streams by.

RunEvasion sends, per engine batch, the batch's records and then its
adversarial images as TensorChunks. The images go to disk as they come, as
rows of `x` in a streamed npz (core.npz_writer), so nothing holds a whole
set; per sample only four integers stay in memory (label, clean and
adversarial prediction, target). When the attack is done the file is the
documented dataset format plus extra members, and is stored through
storage's ordinary upload (CreateUpload, PUT, CompleteUpload), verified
like any user's dataset:

- x: float32 (n, *image_shape), the adversarial examples, in input scale
- y: int64 (n,), the true labels
- clean_predictions, adversarial_predictions: int64 (n,), the model's class
  on the clean and on the adversarial input
- targets: int64 (n,), only for a targeted attack
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from advex.core import tensors
from advex.core.errors import InvalidArgument
from advex.core.npz_writer import NpzWriter
from advex.internal.v1 import records_pb2
from advex.v1 import tensor_pb2


class AdversarialSet:
    def __init__(self, path: Path, samples: int, image_shape: tuple[int, ...], targeted: bool) -> None:
        self.path = path
        self._npz = NpzWriter(path)
        self._x = self._npz.rows("x", np.float32, (samples, *image_shape))
        self._columns = {
            name: np.full(samples, -1, dtype=np.int64)
            for name in ("y", "clean_predictions", "adversarial_predictions")
            + (("targets",) if targeted else ())
        }
        self._chunks = tensors.ChunkAssembler()

    def add_records(self, records: records_pb2.EvasionRecords) -> None:
        labels = tensors.from_proto(records.labels)
        lo, hi = records.first_sample, records.first_sample + len(labels)
        self._columns["y"][lo:hi] = labels
        self._columns["clean_predictions"][lo:hi] = tensors.from_proto(records.clean_probabilities).argmax(axis=1)
        self._columns["adversarial_predictions"][lo:hi] = tensors.from_proto(
            records.adversarial_probabilities
        ).argmax(axis=1)
        if "targets" in self._columns:
            self._columns["targets"][lo:hi] = tensors.from_proto(records.targets)

    def add_images(self, chunk: tensor_pb2.TensorChunk) -> None:
        done = self._chunks.add(chunk)
        if done is None:
            return
        first, images = done
        if first != self._x.written:
            raise InvalidArgument(
                f"adversarial images of sample {first} arrived where sample {self._x.written} was due"
            )
        self._x.write(images)

    def finish(self) -> Path:
        """Closes the file; every sample must have come."""
        self._x.finish()
        for name, column in self._columns.items():
            if (column < 0).any():
                raise InvalidArgument(f"the attack service sent no {name} for sample {int(np.argmax(column < 0))}")
            self._npz.add(name, column)
        return self._npz.close()

    def abandon(self) -> None:
        self._npz.abandon()
