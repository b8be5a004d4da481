import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ArtifactKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ARTIFACT_KIND_UNSPECIFIED: _ClassVar[ArtifactKind]
    ARTIFACT_KIND_MODEL: _ClassVar[ArtifactKind]
    ARTIFACT_KIND_DATASET: _ClassVar[ArtifactKind]
    ARTIFACT_KIND_PATTERN: _ClassVar[ArtifactKind]
    ARTIFACT_KIND_REPORT: _ClassVar[ArtifactKind]
    ARTIFACT_KIND_OUTCOMES: _ClassVar[ArtifactKind]
    ARTIFACT_KIND_SHARD: _ClassVar[ArtifactKind]

class ArtifactState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ARTIFACT_STATE_UNSPECIFIED: _ClassVar[ArtifactState]
    ARTIFACT_STATE_PENDING_UPLOAD: _ClassVar[ArtifactState]
    ARTIFACT_STATE_READY: _ClassVar[ArtifactState]
    ARTIFACT_STATE_REJECTED: _ClassVar[ArtifactState]
ARTIFACT_KIND_UNSPECIFIED: ArtifactKind
ARTIFACT_KIND_MODEL: ArtifactKind
ARTIFACT_KIND_DATASET: ArtifactKind
ARTIFACT_KIND_PATTERN: ArtifactKind
ARTIFACT_KIND_REPORT: ArtifactKind
ARTIFACT_KIND_OUTCOMES: ArtifactKind
ARTIFACT_KIND_SHARD: ArtifactKind
ARTIFACT_STATE_UNSPECIFIED: ArtifactState
ARTIFACT_STATE_PENDING_UPLOAD: ArtifactState
ARTIFACT_STATE_READY: ArtifactState
ARTIFACT_STATE_REJECTED: ArtifactState

class DatasetSummary(_message.Message):
    __slots__ = ("samples", "image_shape", "dtype", "min_label", "max_label", "class_names", "min_value", "max_value")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    MIN_LABEL_FIELD_NUMBER: _ClassVar[int]
    MAX_LABEL_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    MIN_VALUE_FIELD_NUMBER: _ClassVar[int]
    MAX_VALUE_FIELD_NUMBER: _ClassVar[int]
    samples: int
    image_shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    min_label: int
    max_label: int
    class_names: _containers.RepeatedScalarFieldContainer[str]
    min_value: float
    max_value: float
    def __init__(self, samples: _Optional[int] = ..., image_shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ..., min_label: _Optional[int] = ..., max_label: _Optional[int] = ..., class_names: _Optional[_Iterable[str]] = ..., min_value: _Optional[float] = ..., max_value: _Optional[float] = ...) -> None: ...

class PatternSummary(_message.Message):
    __slots__ = ("pattern_shape", "mask_shape", "min_value", "max_value")
    PATTERN_SHAPE_FIELD_NUMBER: _ClassVar[int]
    MASK_SHAPE_FIELD_NUMBER: _ClassVar[int]
    MIN_VALUE_FIELD_NUMBER: _ClassVar[int]
    MAX_VALUE_FIELD_NUMBER: _ClassVar[int]
    pattern_shape: _containers.RepeatedScalarFieldContainer[int]
    mask_shape: _containers.RepeatedScalarFieldContainer[int]
    min_value: float
    max_value: float
    def __init__(self, pattern_shape: _Optional[_Iterable[int]] = ..., mask_shape: _Optional[_Iterable[int]] = ..., min_value: _Optional[float] = ..., max_value: _Optional[float] = ...) -> None: ...

class ModelSummary(_message.Message):
    __slots__ = ("keras_version", "model_class", "layer_count")
    KERAS_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_CLASS_FIELD_NUMBER: _ClassVar[int]
    LAYER_COUNT_FIELD_NUMBER: _ClassVar[int]
    keras_version: str
    model_class: str
    layer_count: int
    def __init__(self, keras_version: _Optional[str] = ..., model_class: _Optional[str] = ..., layer_count: _Optional[int] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("name", "kind", "display_name", "state", "size_bytes", "sha256", "rejection_reason", "create_time", "update_time", "dataset", "model", "pattern")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    REJECTION_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: ArtifactKind
    display_name: str
    state: ArtifactState
    size_bytes: int
    sha256: str
    rejection_reason: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    dataset: DatasetSummary
    model: ModelSummary
    pattern: PatternSummary
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[ArtifactKind, str]] = ..., display_name: _Optional[str] = ..., state: _Optional[_Union[ArtifactState, str]] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., rejection_reason: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dataset: _Optional[_Union[DatasetSummary, _Mapping]] = ..., model: _Optional[_Union[ModelSummary, _Mapping]] = ..., pattern: _Optional[_Union[PatternSummary, _Mapping]] = ...) -> None: ...

class CreateUploadRequest(_message.Message):
    __slots__ = ("kind", "display_name", "size_bytes", "sha256")
    KIND_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    kind: ArtifactKind
    display_name: str
    size_bytes: int
    sha256: str
    def __init__(self, kind: _Optional[_Union[ArtifactKind, str]] = ..., display_name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class CreateUploadResponse(_message.Message):
    __slots__ = ("artifact", "upload_url", "upload_method", "upload_headers", "expire_time")
    class UploadHeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_URL_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_METHOD_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_HEADERS_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    artifact: Artifact
    upload_url: str
    upload_method: str
    upload_headers: _containers.ScalarMap[str, str]
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, artifact: _Optional[_Union[Artifact, _Mapping]] = ..., upload_url: _Optional[str] = ..., upload_method: _Optional[str] = ..., upload_headers: _Optional[_Mapping[str, str]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CompleteUploadRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CompleteUploadResponse(_message.Message):
    __slots__ = ("artifact",)
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    artifact: Artifact
    def __init__(self, artifact: _Optional[_Union[Artifact, _Mapping]] = ...) -> None: ...

class GetArtifactRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetArtifactResponse(_message.Message):
    __slots__ = ("artifact",)
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    artifact: Artifact
    def __init__(self, artifact: _Optional[_Union[Artifact, _Mapping]] = ...) -> None: ...

class ListArtifactsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "kind")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    kind: ArtifactKind
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., kind: _Optional[_Union[ArtifactKind, str]] = ...) -> None: ...

class ListArtifactsResponse(_message.Message):
    __slots__ = ("artifacts", "next_page_token")
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    artifacts: _containers.RepeatedCompositeFieldContainer[Artifact]
    next_page_token: str
    def __init__(self, artifacts: _Optional[_Iterable[_Union[Artifact, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetDownloadUrlRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetDownloadUrlResponse(_message.Message):
    __slots__ = ("url", "expire_time", "sha256", "size_bytes")
    URL_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    url: str
    expire_time: _timestamp_pb2.Timestamp
    sha256: str
    size_bytes: int
    def __init__(self, url: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class DeleteArtifactRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteArtifactResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
