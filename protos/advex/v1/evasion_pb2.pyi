from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AttackSpec(_message.Message):
    __slots__ = ("attack", "norm", "eps", "steps", "step_size", "random_init", "restarts", "decay")
    ATTACK_FIELD_NUMBER: _ClassVar[int]
    NORM_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    STEP_SIZE_FIELD_NUMBER: _ClassVar[int]
    RANDOM_INIT_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    DECAY_FIELD_NUMBER: _ClassVar[int]
    attack: str
    norm: str
    eps: float
    steps: int
    step_size: float
    random_init: bool
    restarts: int
    decay: float
    def __init__(self, attack: _Optional[str] = ..., norm: _Optional[str] = ..., eps: _Optional[float] = ..., steps: _Optional[int] = ..., step_size: _Optional[float] = ..., random_init: _Optional[bool] = ..., restarts: _Optional[int] = ..., decay: _Optional[float] = ...) -> None: ...

class EvasionSpec(_message.Message):
    __slots__ = ("dataset", "attacks", "max_samples", "samples")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    ATTACKS_FIELD_NUMBER: _ClassVar[int]
    MAX_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    attacks: _containers.RepeatedCompositeFieldContainer[AttackSpec]
    max_samples: int
    samples: int
    def __init__(self, dataset: _Optional[str] = ..., attacks: _Optional[_Iterable[_Union[AttackSpec, _Mapping]]] = ..., max_samples: _Optional[int] = ..., samples: _Optional[int] = ...) -> None: ...
