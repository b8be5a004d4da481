from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AttackSpec(_message.Message):
    __slots__ = ("attack", "norm", "eps", "steps", "step_size", "random_init", "restarts", "decay", "binary_search_steps", "learning_rate", "initial_const", "confidence", "delta", "samples", "loss", "target")
    ATTACK_FIELD_NUMBER: _ClassVar[int]
    NORM_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    STEP_SIZE_FIELD_NUMBER: _ClassVar[int]
    RANDOM_INIT_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    DECAY_FIELD_NUMBER: _ClassVar[int]
    BINARY_SEARCH_STEPS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    INITIAL_CONST_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    attack: str
    norm: str
    eps: float
    steps: int
    step_size: float
    random_init: bool
    restarts: int
    decay: float
    binary_search_steps: int
    learning_rate: float
    initial_const: float
    confidence: float
    delta: float
    samples: int
    loss: str
    target: str
    def __init__(self, attack: _Optional[str] = ..., norm: _Optional[str] = ..., eps: _Optional[float] = ..., steps: _Optional[int] = ..., step_size: _Optional[float] = ..., random_init: _Optional[bool] = ..., restarts: _Optional[int] = ..., decay: _Optional[float] = ..., binary_search_steps: _Optional[int] = ..., learning_rate: _Optional[float] = ..., initial_const: _Optional[float] = ..., confidence: _Optional[float] = ..., delta: _Optional[float] = ..., samples: _Optional[int] = ..., loss: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class EvasionSpec(_message.Message):
    __slots__ = ("dataset", "attacks", "max_samples", "samples", "keep_adversarial", "seed")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    ATTACKS_FIELD_NUMBER: _ClassVar[int]
    MAX_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    KEEP_ADVERSARIAL_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    attacks: _containers.RepeatedCompositeFieldContainer[AttackSpec]
    max_samples: int
    samples: int
    keep_adversarial: bool
    seed: int
    def __init__(self, dataset: _Optional[str] = ..., attacks: _Optional[_Iterable[_Union[AttackSpec, _Mapping]]] = ..., max_samples: _Optional[int] = ..., samples: _Optional[int] = ..., keep_adversarial: _Optional[bool] = ..., seed: _Optional[int] = ...) -> None: ...
