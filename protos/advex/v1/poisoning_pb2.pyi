from advex.v1 import evasion_pb2 as _evasion_pb2
from advex.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TriggerSpec(_message.Message):
    __slots__ = ("trigger", "size", "position", "value", "pattern", "alpha", "seed")
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    trigger: str
    size: int
    position: str
    value: float
    pattern: str
    alpha: float
    seed: int
    def __init__(self, trigger: _Optional[str] = ..., size: _Optional[int] = ..., position: _Optional[str] = ..., value: _Optional[float] = ..., pattern: _Optional[str] = ..., alpha: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class TrainingRecipe(_message.Message):
    __slots__ = ("epochs", "batch_size", "learning_rate", "optimizer", "fine_tune")
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    FINE_TUNE_FIELD_NUMBER: _ClassVar[int]
    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str
    fine_tune: bool
    def __init__(self, epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., optimizer: _Optional[str] = ..., fine_tune: _Optional[bool] = ...) -> None: ...

class PoisoningSpec(_message.Message):
    __slots__ = ("training_dataset", "test_dataset", "kind", "trigger", "source_classes", "target_class", "counts", "fractions", "training", "seed", "perturbation")
    TRAINING_DATASET_FIELD_NUMBER: _ClassVar[int]
    TEST_DATASET_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    SOURCE_CLASSES_FIELD_NUMBER: _ClassVar[int]
    TARGET_CLASS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    FRACTIONS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PERTURBATION_FIELD_NUMBER: _ClassVar[int]
    training_dataset: str
    test_dataset: str
    kind: str
    trigger: TriggerSpec
    source_classes: _containers.RepeatedScalarFieldContainer[int]
    target_class: int
    counts: _containers.RepeatedScalarFieldContainer[int]
    fractions: _containers.RepeatedScalarFieldContainer[float]
    training: TrainingRecipe
    seed: int
    perturbation: _evasion_pb2.AttackSpec
    def __init__(self, training_dataset: _Optional[str] = ..., test_dataset: _Optional[str] = ..., kind: _Optional[str] = ..., trigger: _Optional[_Union[TriggerSpec, _Mapping]] = ..., source_classes: _Optional[_Iterable[int]] = ..., target_class: _Optional[int] = ..., counts: _Optional[_Iterable[int]] = ..., fractions: _Optional[_Iterable[float]] = ..., training: _Optional[_Union[TrainingRecipe, _Mapping]] = ..., seed: _Optional[int] = ..., perturbation: _Optional[_Union[_evasion_pb2.AttackSpec, _Mapping]] = ...) -> None: ...

class PoisonedSamples(_message.Message):
    __slots__ = ("first_sample", "labels", "original_labels", "poisoned")
    FIRST_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_LABELS_FIELD_NUMBER: _ClassVar[int]
    POISONED_FIELD_NUMBER: _ClassVar[int]
    first_sample: int
    labels: _tensor_pb2.Tensor
    original_labels: _tensor_pb2.Tensor
    poisoned: _tensor_pb2.Tensor
    def __init__(self, first_sample: _Optional[int] = ..., labels: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., original_labels: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., poisoned: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class PoisonedDataPiece(_message.Message):
    __slots__ = ("samples", "images")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    samples: PoisonedSamples
    images: _tensor_pb2.TensorChunk
    def __init__(self, samples: _Optional[_Union[PoisonedSamples, _Mapping]] = ..., images: _Optional[_Union[_tensor_pb2.TensorChunk, _Mapping]] = ...) -> None: ...
