from advex.v1 import evasion_pb2 as _evasion_pb2
from advex.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LogitsSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOGITS_SOURCE_UNSPECIFIED: _ClassVar[LogitsSource]
    LOGITS_SOURCE_NATIVE: _ClassVar[LogitsSource]
    LOGITS_SOURCE_STRIPPED_SOFTMAX: _ClassVar[LogitsSource]
    LOGITS_SOURCE_LOG_PROBABILITIES: _ClassVar[LogitsSource]
LOGITS_SOURCE_UNSPECIFIED: LogitsSource
LOGITS_SOURCE_NATIVE: LogitsSource
LOGITS_SOURCE_STRIPPED_SOFTMAX: LogitsSource
LOGITS_SOURCE_LOG_PROBABILITIES: LogitsSource

class ObjectLocation(_message.Message):
    __slots__ = ("url", "sha256", "size_bytes")
    URL_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    url: str
    sha256: str
    size_bytes: int
    def __init__(self, url: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("input_shape", "num_classes", "outputs_probabilities", "logits_source", "parameter_count")
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    LOGITS_SOURCE_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_COUNT_FIELD_NUMBER: _ClassVar[int]
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    num_classes: int
    outputs_probabilities: bool
    logits_source: LogitsSource
    parameter_count: int
    def __init__(self, input_shape: _Optional[_Iterable[int]] = ..., num_classes: _Optional[int] = ..., outputs_probabilities: _Optional[bool] = ..., logits_source: _Optional[_Union[LogitsSource, str]] = ..., parameter_count: _Optional[int] = ...) -> None: ...

class DatasetInfo(_message.Message):
    __slots__ = ("samples", "image_shape", "dtype", "min_value", "max_value", "min_label", "max_label")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    MIN_VALUE_FIELD_NUMBER: _ClassVar[int]
    MAX_VALUE_FIELD_NUMBER: _ClassVar[int]
    MIN_LABEL_FIELD_NUMBER: _ClassVar[int]
    MAX_LABEL_FIELD_NUMBER: _ClassVar[int]
    samples: int
    image_shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    min_value: float
    max_value: float
    min_label: int
    max_label: int
    def __init__(self, samples: _Optional[int] = ..., image_shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ..., min_value: _Optional[float] = ..., max_value: _Optional[float] = ..., min_label: _Optional[int] = ..., max_label: _Optional[int] = ...) -> None: ...

class InspectModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ObjectLocation
    def __init__(self, model: _Optional[_Union[ObjectLocation, _Mapping]] = ...) -> None: ...

class InspectModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ...) -> None: ...

class CheckCompatibilityRequest(_message.Message):
    __slots__ = ("model", "dataset", "clip_min", "clip_max")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CLIP_MIN_FIELD_NUMBER: _ClassVar[int]
    CLIP_MAX_FIELD_NUMBER: _ClassVar[int]
    model: ObjectLocation
    dataset: ObjectLocation
    clip_min: float
    clip_max: float
    def __init__(self, model: _Optional[_Union[ObjectLocation, _Mapping]] = ..., dataset: _Optional[_Union[ObjectLocation, _Mapping]] = ..., clip_min: _Optional[float] = ..., clip_max: _Optional[float] = ...) -> None: ...

class CheckCompatibilityResponse(_message.Message):
    __slots__ = ("model", "dataset")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    dataset: DatasetInfo
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ..., dataset: _Optional[_Union[DatasetInfo, _Mapping]] = ...) -> None: ...

class RunEvasionRequest(_message.Message):
    __slots__ = ("model", "dataset", "attack", "clip_min", "clip_max", "start", "stop", "include_adversarial_images", "batch_size", "max_message_bytes", "seed")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    ATTACK_FIELD_NUMBER: _ClassVar[int]
    CLIP_MIN_FIELD_NUMBER: _ClassVar[int]
    CLIP_MAX_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ADVERSARIAL_IMAGES_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    model: ObjectLocation
    dataset: ObjectLocation
    attack: _evasion_pb2.AttackSpec
    clip_min: float
    clip_max: float
    start: int
    stop: int
    include_adversarial_images: bool
    batch_size: int
    max_message_bytes: int
    seed: int
    def __init__(self, model: _Optional[_Union[ObjectLocation, _Mapping]] = ..., dataset: _Optional[_Union[ObjectLocation, _Mapping]] = ..., attack: _Optional[_Union[_evasion_pb2.AttackSpec, _Mapping]] = ..., clip_min: _Optional[float] = ..., clip_max: _Optional[float] = ..., start: _Optional[int] = ..., stop: _Optional[int] = ..., include_adversarial_images: _Optional[bool] = ..., batch_size: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class RunEvasionResponse(_message.Message):
    __slots__ = ("records", "adversarial_images")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    ADVERSARIAL_IMAGES_FIELD_NUMBER: _ClassVar[int]
    records: _evasion_pb2.EvasionRecords
    adversarial_images: _tensor_pb2.TensorChunk
    def __init__(self, records: _Optional[_Union[_evasion_pb2.EvasionRecords, _Mapping]] = ..., adversarial_images: _Optional[_Union[_tensor_pb2.TensorChunk, _Mapping]] = ...) -> None: ...
