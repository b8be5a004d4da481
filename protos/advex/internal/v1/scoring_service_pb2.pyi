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

class ScoredExamples(_message.Message):
    __slots__ = ("attack_index", "examples")
    ATTACK_INDEX_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    attack_index: int
    examples: _records_pb2.EvasionExamples
    def __init__(self, attack_index: _Optional[int] = ..., examples: _Optional[_Union[_records_pb2.EvasionExamples, _Mapping]] = ...) -> None: ...

class ScoreEvasionRequest(_message.Message):
    __slots__ = ("header", "records", "examples")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    header: ScoreEvasionHeader
    records: ScoredRecords
    examples: ScoredExamples
    def __init__(self, header: _Optional[_Union[ScoreEvasionHeader, _Mapping]] = ..., records: _Optional[_Union[ScoredRecords, _Mapping]] = ..., examples: _Optional[_Union[ScoredExamples, _Mapping]] = ...) -> None: ...

class ScoreEvasionResponse(_message.Message):
    __slots__ = ("report", "figures", "outcomes")
    REPORT_FIELD_NUMBER: _ClassVar[int]
    FIGURES_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    report: _report_pb2.EvasionReport
    figures: EvasionFigures
    outcomes: EvasionOutcomes
    def __init__(self, report: _Optional[_Union[_report_pb2.EvasionReport, _Mapping]] = ..., figures: _Optional[_Union[EvasionFigures, _Mapping]] = ..., outcomes: _Optional[_Union[EvasionOutcomes, _Mapping]] = ...) -> None: ...

class EvasionOutcomes(_message.Message):
    __slots__ = ("samples", "clean_correct", "adversarial_correct")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CLEAN_CORRECT_FIELD_NUMBER: _ClassVar[int]
    ADVERSARIAL_CORRECT_FIELD_NUMBER: _ClassVar[int]
    samples: int
    clean_correct: bytes
    adversarial_correct: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, samples: _Optional[int] = ..., clean_correct: _Optional[bytes] = ..., adversarial_correct: _Optional[_Iterable[bytes]] = ...) -> None: ...

class AttackFigures(_message.Message):
    __slots__ = ("confidence_clean", "confidence_adversarial", "class_samples", "class_clean_correct", "class_adversarial_correct", "confusion", "examples")
    CONFIDENCE_CLEAN_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_ADVERSARIAL_FIELD_NUMBER: _ClassVar[int]
    CLASS_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CLASS_CLEAN_CORRECT_FIELD_NUMBER: _ClassVar[int]
    CLASS_ADVERSARIAL_CORRECT_FIELD_NUMBER: _ClassVar[int]
    CONFUSION_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    confidence_clean: _containers.RepeatedScalarFieldContainer[int]
    confidence_adversarial: _containers.RepeatedScalarFieldContainer[int]
    class_samples: _containers.RepeatedScalarFieldContainer[int]
    class_clean_correct: _containers.RepeatedScalarFieldContainer[int]
    class_adversarial_correct: _containers.RepeatedScalarFieldContainer[int]
    confusion: _containers.RepeatedScalarFieldContainer[int]
    examples: _records_pb2.EvasionExamples
    def __init__(self, confidence_clean: _Optional[_Iterable[int]] = ..., confidence_adversarial: _Optional[_Iterable[int]] = ..., class_samples: _Optional[_Iterable[int]] = ..., class_clean_correct: _Optional[_Iterable[int]] = ..., class_adversarial_correct: _Optional[_Iterable[int]] = ..., confusion: _Optional[_Iterable[int]] = ..., examples: _Optional[_Union[_records_pb2.EvasionExamples, _Mapping]] = ...) -> None: ...

class EvasionFigures(_message.Message):
    __slots__ = ("attacks",)
    ATTACKS_FIELD_NUMBER: _ClassVar[int]
    attacks: _containers.RepeatedCompositeFieldContainer[AttackFigures]
    def __init__(self, attacks: _Optional[_Iterable[_Union[AttackFigures, _Mapping]]] = ...) -> None: ...

class RenderReportRequest(_message.Message):
    __slots__ = ("report", "evasion_figures", "class_names", "versions", "poisoning_examples", "poisoning_examples_count")
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REPORT_FIELD_NUMBER: _ClassVar[int]
    EVASION_FIGURES_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    POISONING_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    POISONING_EXAMPLES_COUNT_FIELD_NUMBER: _ClassVar[int]
    report: _report_pb2.Report
    evasion_figures: EvasionFigures
    class_names: _containers.RepeatedScalarFieldContainer[str]
    versions: _containers.ScalarMap[str, str]
    poisoning_examples: _records_pb2.EvasionExamples
    poisoning_examples_count: int
    def __init__(self, report: _Optional[_Union[_report_pb2.Report, _Mapping]] = ..., evasion_figures: _Optional[_Union[EvasionFigures, _Mapping]] = ..., class_names: _Optional[_Iterable[str]] = ..., versions: _Optional[_Mapping[str, str]] = ..., poisoning_examples: _Optional[_Union[_records_pb2.EvasionExamples, _Mapping]] = ..., poisoning_examples_count: _Optional[int] = ...) -> None: ...

class RenderReportResponse(_message.Message):
    __slots__ = ("html",)
    HTML_FIELD_NUMBER: _ClassVar[int]
    html: bytes
    def __init__(self, html: _Optional[bytes] = ...) -> None: ...

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
