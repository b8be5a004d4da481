"""What verification learned, as the protobuf messages clients receive.

Shared by the servicer, which sends them, and by CompleteUpload, which
builds and serializes them before an artifact becomes READY, so that a
summary that cannot be sent never reaches the registry.
"""

from __future__ import annotations

from advex.storage.verify import DatasetSummary, ModelSummary
from advex.v1 import artifact_pb2


def model_summary_proto(summary: ModelSummary) -> artifact_pb2.ModelSummary:
    return artifact_pb2.ModelSummary(
        keras_version=summary.keras_version,
        model_class=summary.model_class,
        layer_count=summary.layer_count,
    )


def dataset_summary_proto(summary: DatasetSummary) -> artifact_pb2.DatasetSummary:
    return artifact_pb2.DatasetSummary(
        samples=summary.samples,
        image_shape=summary.image_shape,
        dtype=summary.dtype,
        min_label=summary.min_label,
        max_label=summary.max_label,
        class_names=summary.class_names,
    )


def summary_wire_size(summary: ModelSummary | DatasetSummary) -> int:
    """Bytes of the serialized summary; raises (ValueError, TypeError, ...)
    if a field does not fit its proto type."""
    if isinstance(summary, ModelSummary):
        message = artifact_pb2.Artifact(model=model_summary_proto(summary))
    else:
        message = artifact_pb2.Artifact(dataset=dataset_summary_proto(summary))
    return len(message.SerializeToString())
