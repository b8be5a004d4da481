from advex.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EvasionRecords(_message.Message):
    __slots__ = ("first_sample", "labels", "clean_probabilities", "adversarial_probabilities", "perturbation_linf", "perturbation_l2", "perturbation_l0", "targets")
    FIRST_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CLEAN_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    ADVERSARIAL_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    PERTURBATION_LINF_FIELD_NUMBER: _ClassVar[int]
    PERTURBATION_L2_FIELD_NUMBER: _ClassVar[int]
    PERTURBATION_L0_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    first_sample: int
    labels: _tensor_pb2.Tensor
    clean_probabilities: _tensor_pb2.Tensor
    adversarial_probabilities: _tensor_pb2.Tensor
    perturbation_linf: _tensor_pb2.Tensor
    perturbation_l2: _tensor_pb2.Tensor
    perturbation_l0: _tensor_pb2.Tensor
    targets: _tensor_pb2.Tensor
    def __init__(self, first_sample: _Optional[int] = ..., labels: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., clean_probabilities: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., adversarial_probabilities: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., perturbation_linf: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., perturbation_l2: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., perturbation_l0: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., targets: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class PoisoningRecords(_message.Message):
    __slots__ = ("first_sample", "labels", "clean_probabilities", "triggered_probabilities")
    FIRST_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CLEAN_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    TRIGGERED_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    first_sample: int
    labels: _tensor_pb2.Tensor
    clean_probabilities: _tensor_pb2.Tensor
    triggered_probabilities: _tensor_pb2.Tensor
    def __init__(self, first_sample: _Optional[int] = ..., labels: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., clean_probabilities: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., triggered_probabilities: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class EvasionExamples(_message.Message):
    __slots__ = ("samples", "clean", "adversarial", "labels", "clean_predictions", "adversarial_predictions")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CLEAN_FIELD_NUMBER: _ClassVar[int]
    ADVERSARIAL_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CLEAN_PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    ADVERSARIAL_PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    samples: _containers.RepeatedScalarFieldContainer[int]
    clean: _tensor_pb2.Tensor
    adversarial: _tensor_pb2.Tensor
    labels: _containers.RepeatedScalarFieldContainer[int]
    clean_predictions: _containers.RepeatedScalarFieldContainer[int]
    adversarial_predictions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, samples: _Optional[_Iterable[int]] = ..., clean: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., adversarial: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., labels: _Optional[_Iterable[int]] = ..., clean_predictions: _Optional[_Iterable[int]] = ..., adversarial_predictions: _Optional[_Iterable[int]] = ...) -> None: ...
