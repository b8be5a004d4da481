from advex.v1 import evasion_pb2 as _evasion_pb2
from advex.v1 import report_pb2 as _report_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScoreEvasionHeader(_message.Message):
    __slots__ = ("attacks", "samples", "num_classes")
    ATTACKS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    attacks: _containers.RepeatedCompositeFieldContainer[_evasion_pb2.AttackSpec]
    samples: int
    num_classes: int
    def __init__(self, attacks: _Optional[_Iterable[_Union[_evasion_pb2.AttackSpec, _Mapping]]] = ..., samples: _Optional[int] = ..., num_classes: _Optional[int] = ...) -> None: ...

class ScoredRecords(_message.Message):
    __slots__ = ("attack_index", "records")
    ATTACK_INDEX_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    attack_index: int
    records: _evasion_pb2.EvasionRecords
    def __init__(self, attack_index: _Optional[int] = ..., records: _Optional[_Union[_evasion_pb2.EvasionRecords, _Mapping]] = ...) -> None: ...

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
    report: _report_pb2.Report
    def __init__(self, report: _Optional[_Union[_report_pb2.Report, _Mapping]] = ...) -> None: ...
