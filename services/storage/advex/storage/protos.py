"""What verification learned, as the protobuf messages clients receive.

Shared by the servicer, which sends them, and by CompleteUpload, which
builds and serializes them before an artifact becomes READY, so that a
summary that cannot be sent never reaches the registry.
"""

from __future__ import annotations

from advex.storage.verify import DatasetSummary, ModelSummary, PatternSummary, Summary
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
        min_value=summary.min_value,
        max_value=summary.max_value,
    )


def pattern_summary_proto(summary: PatternSummary) -> artifact_pb2.PatternSummary:
    return artifact_pb2.PatternSummary(
        pattern_shape=summary.pattern_shape,
        mask_shape=summary.mask_shape,
        min_value=summary.min_value,
        max_value=summary.max_value,
    )


def set_summary(message: artifact_pb2.Artifact, summary: Summary) -> None:
    """Puts `summary` in its field of `message`; raises (ValueError,
    TypeError, ...) if a field does not fit its proto type."""
    if isinstance(summary, ModelSummary):
        message.model.CopyFrom(model_summary_proto(summary))
    elif isinstance(summary, DatasetSummary):
        message.dataset.CopyFrom(dataset_summary_proto(summary))
    elif isinstance(summary, PatternSummary):
        message.pattern.CopyFrom(pattern_summary_proto(summary))
    else:
        raise TypeError(f"no Artifact field holds a {type(summary).__name__}")


def summary_wire_size(summary: Summary) -> int:
    """Bytes of the serialized summary; raises (ValueError, TypeError, ...)
    if a field does not fit its proto type."""
    message = artifact_pb2.Artifact()
    set_summary(message, summary)
    return len(message.SerializeToString())
