from advex.internal.v1 import records_pb2 as _records_pb2
from advex.v1 import evasion_pb2 as _evasion_pb2
from advex.v1 import report_pb2 as _report_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScoreEvasionHeader(_message.Message):
    __slots__ = ("attacks", "samples", "num_classes", "clip_min", "clip_max")
    ATTACKS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    CLIP_MIN_FIELD_NUMBER: _ClassVar[int]
    CLIP_MAX_FIELD_NUMBER: _ClassVar[int]
    attacks: _containers.RepeatedCompositeFieldContainer[_evasion_pb2.AttackSpec]
    samples: int
    num_classes: int
    clip_min: float
    clip_max: float
    def __init__(self, attacks: _Optional[_Iterable[_Union[_evasion_pb2.AttackSpec, _Mapping]]] = ..., samples: _Optional[int] = ..., num_classes: _Optional[int] = ..., clip_min: _Optional[float] = ..., clip_max: _Optional[float] = ...) -> None: ...

class ScoredRecords(_message.Message):
    __slots__ = ("attack_index", "records")
    ATTACK_INDEX_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    attack_index: int
    records: _records_pb2.EvasionRecords
    def __init__(self, attack_index: _Optional[int] = ..., records: _Optional[_Union[_records_pb2.EvasionRecords, _Mapping]] = ...) -> None: ...

class ScoreEvasionRequest(_message.Message):
    __slots__ = ("header", "records")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    header: ScoreEvasionHeader
    records: ScoredRecords
    def __init__(self, header: _Optional[_Union[ScoreEvasionHeader, _Mapping]] = ..., records: _Optional[_Union[ScoredRecords, _Mapping]] = ...) -> None: ...

class ScoreEvasionResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: _report_pb2.EvasionReport
    def __init__(self, report: _Optional[_Union[_report_pb2.EvasionReport, _Mapping]] = ...) -> None: ...

class ScorePoisoningHeader(_message.Message):
    __slots__ = ("num_classes", "samples", "source_classes", "target_class", "poison_counts", "poison_fractions")
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_CLASSES_FIELD_NUMBER: _ClassVar[int]
    TARGET_CLASS_FIELD_NUMBER: _ClassVar[int]
    POISON_COUNTS_FIELD_NUMBER: _ClassVar[int]
    POISON_FRACTIONS_FIELD_NUMBER: _ClassVar[int]
    num_classes: int
    samples: int
    source_classes: _containers.RepeatedScalarFieldContainer[int]
    target_class: int
    poison_counts: _containers.RepeatedScalarFieldContainer[int]
    poison_fractions: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, num_classes: _Optional[int] = ..., samples: _Optional[int] = ..., source_classes: _Optional[_Iterable[int]] = ..., target_class: _Optional[int] = ..., poison_counts: _Optional[_Iterable[int]] = ..., poison_fractions: _Optional[_Iterable[float]] = ...) -> None: ...

class ScoredPoisoningRecords(_message.Message):
    __slots__ = ("model_index", "records")
    MODEL_INDEX_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    model_index: int
    records: _records_pb2.PoisoningRecords
    def __init__(self, model_index: _Optional[int] = ..., records: _Optional[_Union[_records_pb2.PoisoningRecords, _Mapping]] = ...) -> None: ...

class ScorePoisoningRequest(_message.Message):
    __slots__ = ("header", "records")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    header: ScorePoisoningHeader
    records: ScoredPoisoningRecords
    def __init__(self, header: _Optional[_Union[ScorePoisoningHeader, _Mapping]] = ..., records: _Optional[_Union[ScoredPoisoningRecords, _Mapping]] = ...) -> None: ...

class ScorePoisoningResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: _report_pb2.PoisoningReport
    def __init__(self, report: _Optional[_Union[_report_pb2.PoisoningReport, _Mapping]] = ...) -> None: ...
