from advex.v1 import evasion_pb2 as _evasion_pb2
from advex.v1 import poisoning_pb2 as _poisoning_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Report(_message.Message):
    __slots__ = ("name", "state", "model", "dataset", "clip_min", "clip_max", "evasion", "poisoning", "html_page")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CLIP_MIN_FIELD_NUMBER: _ClassVar[int]
    CLIP_MAX_FIELD_NUMBER: _ClassVar[int]
    EVASION_FIELD_NUMBER: _ClassVar[int]
    POISONING_FIELD_NUMBER: _ClassVar[int]
    HTML_PAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: str
    model: ArtifactRef
    dataset: ArtifactRef
    clip_min: float
    clip_max: float
    evasion: EvasionReport
    poisoning: PoisoningReport
    html_page: ArtifactRef
    def __init__(self, name: _Optional[str] = ..., state: _Optional[str] = ..., model: _Optional[_Union[ArtifactRef, _Mapping]] = ..., dataset: _Optional[_Union[ArtifactRef, _Mapping]] = ..., clip_min: _Optional[float] = ..., clip_max: _Optional[float] = ..., evasion: _Optional[_Union[EvasionReport, _Mapping]] = ..., poisoning: _Optional[_Union[PoisoningReport, _Mapping]] = ..., html_page: _Optional[_Union[ArtifactRef, _Mapping]] = ...) -> None: ...

class EvasionReport(_message.Message):
    __slots__ = ("samples", "clean_accuracy", "attacks", "worst_case", "robustness_score", "curves", "mean_confidence_clean", "mean_true_class_probability_clean", "warnings", "seed", "outcomes")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CLEAN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ATTACKS_FIELD_NUMBER: _ClassVar[int]
    WORST_CASE_FIELD_NUMBER: _ClassVar[int]
    ROBUSTNESS_SCORE_FIELD_NUMBER: _ClassVar[int]
    CURVES_FIELD_NUMBER: _ClassVar[int]
    MEAN_CONFIDENCE_CLEAN_FIELD_NUMBER: _ClassVar[int]
    MEAN_TRUE_CLASS_PROBABILITY_CLEAN_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    samples: int
    clean_accuracy: float
    attacks: _containers.RepeatedCompositeFieldContainer[AttackResult]
    worst_case: _containers.RepeatedCompositeFieldContainer[WorstCase]
    robustness_score: float
    curves: _containers.RepeatedCompositeFieldContainer[RobustnessCurve]
    mean_confidence_clean: float
    mean_true_class_probability_clean: float
    warnings: _containers.RepeatedCompositeFieldContainer[EvaluationWarning]
    seed: int
    outcomes: ArtifactRef
    def __init__(self, samples: _Optional[int] = ..., clean_accuracy: _Optional[float] = ..., attacks: _Optional[_Iterable[_Union[AttackResult, _Mapping]]] = ..., worst_case: _Optional[_Iterable[_Union[WorstCase, _Mapping]]] = ..., robustness_score: _Optional[float] = ..., curves: _Optional[_Iterable[_Union[RobustnessCurve, _Mapping]]] = ..., mean_confidence_clean: _Optional[float] = ..., mean_true_class_probability_clean: _Optional[float] = ..., warnings: _Optional[_Iterable[_Union[EvaluationWarning, _Mapping]]] = ..., seed: _Optional[int] = ..., outcomes: _Optional[_Union[ArtifactRef, _Mapping]] = ...) -> None: ...

class EvaluationWarning(_message.Message):
    __slots__ = ("check", "message")
    CHECK_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    check: str
    message: str
    def __init__(self, check: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ArtifactRef(_message.Message):
    __slots__ = ("name", "sha256", "display_name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    sha256: str
    display_name: str
    def __init__(self, name: _Optional[str] = ..., sha256: _Optional[str] = ..., display_name: _Optional[str] = ...) -> None: ...

class AttackResult(_message.Message):
    __slots__ = ("attack", "norm", "eps", "steps", "step_size", "adversarial_accuracy", "attack_success_rate", "mean_confidence_clean", "mean_confidence_adversarial", "mean_true_class_probability_clean", "mean_true_class_probability_adversarial", "robustness_score", "perturbation_linf_mean", "perturbation_linf_median", "perturbation_l2_mean", "perturbation_l2_median", "perturbation_l0_mean", "perturbation_l0_median", "clean_correct_samples", "successful_samples", "spec", "attacked_samples", "unbounded", "adversarial_dataset", "target")
    ATTACK_FIELD_NUMBER: _ClassVar[int]
    NORM_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    STEP_SIZE_FIELD_NUMBER: _ClassVar[int]
    ADVERSARIAL_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ATTACK_SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    MEAN_CONFIDENCE_CLEAN_FIELD_NUMBER: _ClassVar[int]
    MEAN_CONFIDENCE_ADVERSARIAL_FIELD_NUMBER: _ClassVar[int]
    MEAN_TRUE_CLASS_PROBABILITY_CLEAN_FIELD_NUMBER: _ClassVar[int]
    MEAN_TRUE_CLASS_PROBABILITY_ADVERSARIAL_FIELD_NUMBER: _ClassVar[int]
    ROBUSTNESS_SCORE_FIELD_NUMBER: _ClassVar[int]
    PERTURBATION_LINF_MEAN_FIELD_NUMBER: _ClassVar[int]
    PERTURBATION_LINF_MEDIAN_FIELD_NUMBER: _ClassVar[int]
    PERTURBATION_L2_MEAN_FIELD_NUMBER: _ClassVar[int]
    PERTURBATION_L2_MEDIAN_FIELD_NUMBER: _ClassVar[int]
    PERTURBATION_L0_MEAN_FIELD_NUMBER: _ClassVar[int]
    PERTURBATION_L0_MEDIAN_FIELD_NUMBER: _ClassVar[int]
    CLEAN_CORRECT_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SUCCESSFUL_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ATTACKED_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    UNBOUNDED_FIELD_NUMBER: _ClassVar[int]
    ADVERSARIAL_DATASET_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    attack: str
    norm: str
    eps: float
    steps: int
    step_size: float
    adversarial_accuracy: float
    attack_success_rate: float
    mean_confidence_clean: float
    mean_confidence_adversarial: float
    mean_true_class_probability_clean: float
    mean_true_class_probability_adversarial: float
    robustness_score: float
    perturbation_linf_mean: float
    perturbation_linf_median: float
    perturbation_l2_mean: float
    perturbation_l2_median: float
    perturbation_l0_mean: float
    perturbation_l0_median: float
    clean_correct_samples: int
    successful_samples: int
    spec: _evasion_pb2.AttackSpec
    attacked_samples: int
    unbounded: bool
    adversarial_dataset: ArtifactRef
    target: str
    def __init__(self, attack: _Optional[str] = ..., norm: _Optional[str] = ..., eps: _Optional[float] = ..., steps: _Optional[int] = ..., step_size: _Optional[float] = ..., adversarial_accuracy: _Optional[float] = ..., attack_success_rate: _Optional[float] = ..., mean_confidence_clean: _Optional[float] = ..., mean_confidence_adversarial: _Optional[float] = ..., mean_true_class_probability_clean: _Optional[float] = ..., mean_true_class_probability_adversarial: _Optional[float] = ..., robustness_score: _Optional[float] = ..., perturbation_linf_mean: _Optional[float] = ..., perturbation_linf_median: _Optional[float] = ..., perturbation_l2_mean: _Optional[float] = ..., perturbation_l2_median: _Optional[float] = ..., perturbation_l0_mean: _Optional[float] = ..., perturbation_l0_median: _Optional[float] = ..., clean_correct_samples: _Optional[int] = ..., successful_samples: _Optional[int] = ..., spec: _Optional[_Union[_evasion_pb2.AttackSpec, _Mapping]] = ..., attacked_samples: _Optional[int] = ..., unbounded: _Optional[bool] = ..., adversarial_dataset: _Optional[_Union[ArtifactRef, _Mapping]] = ..., target: _Optional[str] = ...) -> None: ...

class WorstCase(_message.Message):
    __slots__ = ("norm", "eps", "accuracy", "attacks")
    NORM_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ATTACKS_FIELD_NUMBER: _ClassVar[int]
    norm: str
    eps: float
    accuracy: float
    attacks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, norm: _Optional[str] = ..., eps: _Optional[float] = ..., accuracy: _Optional[float] = ..., attacks: _Optional[_Iterable[str]] = ...) -> None: ...

class RobustnessCurve(_message.Message):
    __slots__ = ("attack", "norm", "points", "eps_at_half_clean_accuracy", "target")
    ATTACK_FIELD_NUMBER: _ClassVar[int]
    NORM_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    EPS_AT_HALF_CLEAN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    attack: str
    norm: str
    points: _containers.RepeatedCompositeFieldContainer[CurvePoint]
    eps_at_half_clean_accuracy: float
    target: str
    def __init__(self, attack: _Optional[str] = ..., norm: _Optional[str] = ..., points: _Optional[_Iterable[_Union[CurvePoint, _Mapping]]] = ..., eps_at_half_clean_accuracy: _Optional[float] = ..., target: _Optional[str] = ...) -> None: ...

class CurvePoint(_message.Message):
    __slots__ = ("eps", "adversarial_accuracy")
    EPS_FIELD_NUMBER: _ClassVar[int]
    ADVERSARIAL_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    eps: float
    adversarial_accuracy: float
    def __init__(self, eps: _Optional[float] = ..., adversarial_accuracy: _Optional[float] = ...) -> None: ...

class PoisoningReport(_message.Message):
    __slots__ = ("spec", "training_dataset", "pattern", "training_samples", "test_samples", "source_classes", "pool_samples", "attacked_test_samples", "baseline", "poisoned", "count_at_90_percent_asr")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    TRAINING_DATASET_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    TRAINING_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    TEST_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_CLASSES_FIELD_NUMBER: _ClassVar[int]
    POOL_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    ATTACKED_TEST_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    POISONED_FIELD_NUMBER: _ClassVar[int]
    COUNT_AT_90_PERCENT_ASR_FIELD_NUMBER: _ClassVar[int]
    spec: _poisoning_pb2.PoisoningSpec
    training_dataset: ArtifactRef
    pattern: ArtifactRef
    training_samples: int
    test_samples: int
    source_classes: _containers.RepeatedScalarFieldContainer[int]
    pool_samples: int
    attacked_test_samples: int
    baseline: PoisonedModelResult
    poisoned: _containers.RepeatedCompositeFieldContainer[PoisonedModelResult]
    count_at_90_percent_asr: int
    def __init__(self, spec: _Optional[_Union[_poisoning_pb2.PoisoningSpec, _Mapping]] = ..., training_dataset: _Optional[_Union[ArtifactRef, _Mapping]] = ..., pattern: _Optional[_Union[ArtifactRef, _Mapping]] = ..., training_samples: _Optional[int] = ..., test_samples: _Optional[int] = ..., source_classes: _Optional[_Iterable[int]] = ..., pool_samples: _Optional[int] = ..., attacked_test_samples: _Optional[int] = ..., baseline: _Optional[_Union[PoisonedModelResult, _Mapping]] = ..., poisoned: _Optional[_Iterable[_Union[PoisonedModelResult, _Mapping]]] = ..., count_at_90_percent_asr: _Optional[int] = ...) -> None: ...

class PoisonedModelResult(_message.Message):
    __slots__ = ("poison_count", "poison_fraction", "model", "poisoned_dataset", "clean_accuracy", "clean_accuracy_source", "clean_accuracy_non_source", "clean_accuracy_drop", "attack_success_rate", "triggered_accuracy_source", "triggered_accuracy_non_source", "accuracy_gap", "per_class_accuracy", "successful_samples", "training_seconds", "final_training_loss", "final_training_accuracy")
    POISON_COUNT_FIELD_NUMBER: _ClassVar[int]
    POISON_FRACTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    POISONED_DATASET_FIELD_NUMBER: _ClassVar[int]
    CLEAN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    CLEAN_ACCURACY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CLEAN_ACCURACY_NON_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CLEAN_ACCURACY_DROP_FIELD_NUMBER: _ClassVar[int]
    ATTACK_SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    TRIGGERED_ACCURACY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    TRIGGERED_ACCURACY_NON_SOURCE_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_GAP_FIELD_NUMBER: _ClassVar[int]
    PER_CLASS_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    SUCCESSFUL_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    TRAINING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FINAL_TRAINING_LOSS_FIELD_NUMBER: _ClassVar[int]
    FINAL_TRAINING_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    poison_count: int
    poison_fraction: float
    model: ArtifactRef
    poisoned_dataset: ArtifactRef
    clean_accuracy: float
    clean_accuracy_source: float
    clean_accuracy_non_source: float
    clean_accuracy_drop: float
    attack_success_rate: float
    triggered_accuracy_source: float
    triggered_accuracy_non_source: float
    accuracy_gap: float
    per_class_accuracy: _containers.RepeatedScalarFieldContainer[float]
    successful_samples: int
    training_seconds: float
    final_training_loss: float
    final_training_accuracy: float
    def __init__(self, poison_count: _Optional[int] = ..., poison_fraction: _Optional[float] = ..., model: _Optional[_Union[ArtifactRef, _Mapping]] = ..., poisoned_dataset: _Optional[_Union[ArtifactRef, _Mapping]] = ..., clean_accuracy: _Optional[float] = ..., clean_accuracy_source: _Optional[float] = ..., clean_accuracy_non_source: _Optional[float] = ..., clean_accuracy_drop: _Optional[float] = ..., attack_success_rate: _Optional[float] = ..., triggered_accuracy_source: _Optional[float] = ..., triggered_accuracy_non_source: _Optional[float] = ..., accuracy_gap: _Optional[float] = ..., per_class_accuracy: _Optional[_Iterable[float]] = ..., successful_samples: _Optional[int] = ..., training_seconds: _Optional[float] = ..., final_training_loss: _Optional[float] = ..., final_training_accuracy: _Optional[float] = ...) -> None: ...
