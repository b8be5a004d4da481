from advex.internal.v1 import records_pb2 as _records_pb2
from advex.v1 import evasion_pb2 as _evasion_pb2
from advex.v1 import poisoning_pb2 as _poisoning_pb2
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

class ProductKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRODUCT_KIND_UNSPECIFIED: _ClassVar[ProductKind]
    PRODUCT_KIND_POISONED_DATASET: _ClassVar[ProductKind]
    PRODUCT_KIND_MODEL: _ClassVar[ProductKind]
LOGITS_SOURCE_UNSPECIFIED: LogitsSource
LOGITS_SOURCE_NATIVE: LogitsSource
LOGITS_SOURCE_STRIPPED_SOFTMAX: LogitsSource
LOGITS_SOURCE_LOG_PROBABILITIES: LogitsSource
PRODUCT_KIND_UNSPECIFIED: ProductKind
PRODUCT_KIND_POISONED_DATASET: ProductKind
PRODUCT_KIND_MODEL: ProductKind

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
    __slots__ = ("input_shape", "num_classes", "outputs_probabilities", "logits_source", "parameter_count", "batch_size")
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    LOGITS_SOURCE_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_COUNT_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    num_classes: int
    outputs_probabilities: bool
    logits_source: LogitsSource
    parameter_count: int
    batch_size: int
    def __init__(self, input_shape: _Optional[_Iterable[int]] = ..., num_classes: _Optional[int] = ..., outputs_probabilities: _Optional[bool] = ..., logits_source: _Optional[_Union[LogitsSource, str]] = ..., parameter_count: _Optional[int] = ..., batch_size: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("records", "adversarial_images", "examples", "engine")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    ADVERSARIAL_IMAGES_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    records: _records_pb2.EvasionRecords
    adversarial_images: _tensor_pb2.TensorChunk
    examples: _records_pb2.EvasionExamples
    engine: EngineInfo
    def __init__(self, records: _Optional[_Union[_records_pb2.EvasionRecords, _Mapping]] = ..., adversarial_images: _Optional[_Union[_tensor_pb2.TensorChunk, _Mapping]] = ..., examples: _Optional[_Union[_records_pb2.EvasionExamples, _Mapping]] = ..., engine: _Optional[_Union[EngineInfo, _Mapping]] = ...) -> None: ...

class EngineInfo(_message.Message):
    __slots__ = ("versions",)
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.ScalarMap[str, str]
    def __init__(self, versions: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PoisoningInputs(_message.Message):
    __slots__ = ("model", "training_dataset", "test_dataset", "pattern", "spec", "clip_min", "clip_max")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TRAINING_DATASET_FIELD_NUMBER: _ClassVar[int]
    TEST_DATASET_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CLIP_MIN_FIELD_NUMBER: _ClassVar[int]
    CLIP_MAX_FIELD_NUMBER: _ClassVar[int]
    model: ObjectLocation
    training_dataset: ObjectLocation
    test_dataset: ObjectLocation
    pattern: ObjectLocation
    spec: _poisoning_pb2.PoisoningSpec
    clip_min: float
    clip_max: float
    def __init__(self, model: _Optional[_Union[ObjectLocation, _Mapping]] = ..., training_dataset: _Optional[_Union[ObjectLocation, _Mapping]] = ..., test_dataset: _Optional[_Union[ObjectLocation, _Mapping]] = ..., pattern: _Optional[_Union[ObjectLocation, _Mapping]] = ..., spec: _Optional[_Union[_poisoning_pb2.PoisoningSpec, _Mapping]] = ..., clip_min: _Optional[float] = ..., clip_max: _Optional[float] = ...) -> None: ...

class CheckPoisoningRequest(_message.Message):
    __slots__ = ("inputs",)
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    inputs: PoisoningInputs
    def __init__(self, inputs: _Optional[_Union[PoisoningInputs, _Mapping]] = ...) -> None: ...

class CheckPoisoningResponse(_message.Message):
    __slots__ = ("model", "training_dataset", "test_dataset", "source_classes", "pool_samples", "counts", "steps_per_model", "attacked_test_samples")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TRAINING_DATASET_FIELD_NUMBER: _ClassVar[int]
    TEST_DATASET_FIELD_NUMBER: _ClassVar[int]
    SOURCE_CLASSES_FIELD_NUMBER: _ClassVar[int]
    POOL_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    STEPS_PER_MODEL_FIELD_NUMBER: _ClassVar[int]
    ATTACKED_TEST_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    training_dataset: DatasetInfo
    test_dataset: DatasetInfo
    source_classes: _containers.RepeatedScalarFieldContainer[int]
    pool_samples: int
    counts: _containers.RepeatedScalarFieldContainer[int]
    steps_per_model: int
    attacked_test_samples: int
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ..., training_dataset: _Optional[_Union[DatasetInfo, _Mapping]] = ..., test_dataset: _Optional[_Union[DatasetInfo, _Mapping]] = ..., source_classes: _Optional[_Iterable[int]] = ..., pool_samples: _Optional[int] = ..., counts: _Optional[_Iterable[int]] = ..., steps_per_model: _Optional[int] = ..., attacked_test_samples: _Optional[int] = ...) -> None: ...

class UploadTicket(_message.Message):
    __slots__ = ("url", "method", "headers")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    URL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    url: str
    method: str
    headers: _containers.ScalarMap[str, str]
    def __init__(self, url: _Optional[str] = ..., method: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RunPoisoningUnit(_message.Message):
    __slots__ = ("inputs", "poison_count", "max_message_bytes")
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    POISON_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    inputs: PoisoningInputs
    poison_count: int
    max_message_bytes: int
    def __init__(self, inputs: _Optional[_Union[PoisoningInputs, _Mapping]] = ..., poison_count: _Optional[int] = ..., max_message_bytes: _Optional[int] = ...) -> None: ...

class RunPoisoningRequest(_message.Message):
    __slots__ = ("unit", "upload")
    UNIT_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    unit: RunPoisoningUnit
    upload: UploadTicket
    def __init__(self, unit: _Optional[_Union[RunPoisoningUnit, _Mapping]] = ..., upload: _Optional[_Union[UploadTicket, _Mapping]] = ...) -> None: ...

class TrainingProgress(_message.Message):
    __slots__ = ("steps_done", "steps_total", "epoch", "epochs", "loss", "accuracy", "epoch_end")
    STEPS_DONE_FIELD_NUMBER: _ClassVar[int]
    STEPS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    EPOCH_END_FIELD_NUMBER: _ClassVar[int]
    steps_done: int
    steps_total: int
    epoch: int
    epochs: int
    loss: float
    accuracy: float
    epoch_end: bool
    def __init__(self, steps_done: _Optional[int] = ..., steps_total: _Optional[int] = ..., epoch: _Optional[int] = ..., epochs: _Optional[int] = ..., loss: _Optional[float] = ..., accuracy: _Optional[float] = ..., epoch_end: _Optional[bool] = ...) -> None: ...

class Product(_message.Message):
    __slots__ = ("kind", "size_bytes", "sha256")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    kind: ProductKind
    size_bytes: int
    sha256: str
    def __init__(self, kind: _Optional[_Union[ProductKind, str]] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class ProductStored(_message.Message):
    __slots__ = ("kind",)
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: ProductKind
    def __init__(self, kind: _Optional[_Union[ProductKind, str]] = ...) -> None: ...

class TrainingSummary(_message.Message):
    __slots__ = ("training_seconds", "final_loss", "final_accuracy")
    TRAINING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FINAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    FINAL_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    training_seconds: float
    final_loss: float
    final_accuracy: float
    def __init__(self, training_seconds: _Optional[float] = ..., final_loss: _Optional[float] = ..., final_accuracy: _Optional[float] = ...) -> None: ...

class RunPoisoningResponse(_message.Message):
    __slots__ = ("progress", "product", "stored", "summary", "records", "engine", "examples")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    progress: TrainingProgress
    product: Product
    stored: ProductStored
    summary: TrainingSummary
    records: _records_pb2.PoisoningRecords
    engine: EngineInfo
    examples: _records_pb2.EvasionExamples
    def __init__(self, progress: _Optional[_Union[TrainingProgress, _Mapping]] = ..., product: _Optional[_Union[Product, _Mapping]] = ..., stored: _Optional[_Union[ProductStored, _Mapping]] = ..., summary: _Optional[_Union[TrainingSummary, _Mapping]] = ..., records: _Optional[_Union[_records_pb2.PoisoningRecords, _Mapping]] = ..., engine: _Optional[_Union[EngineInfo, _Mapping]] = ..., examples: _Optional[_Union[_records_pb2.EvasionExamples, _Mapping]] = ...) -> None: ...

class StreamPoisonedDataRequest(_message.Message):
    __slots__ = ("inputs", "poison_count", "max_message_bytes")
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    POISON_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    inputs: PoisoningInputs
    poison_count: int
    max_message_bytes: int
    def __init__(self, inputs: _Optional[_Union[PoisoningInputs, _Mapping]] = ..., poison_count: _Optional[int] = ..., max_message_bytes: _Optional[int] = ...) -> None: ...

class StreamPoisonedDataResponse(_message.Message):
    __slots__ = ("piece",)
    PIECE_FIELD_NUMBER: _ClassVar[int]
    piece: _poisoning_pb2.PoisonedDataPiece
    def __init__(self, piece: _Optional[_Union[_poisoning_pb2.PoisonedDataPiece, _Mapping]] = ...) -> None: ...
