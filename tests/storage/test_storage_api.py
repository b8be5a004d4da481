"""ArtifactService over real gRPC, with uploads and downloads over real HTTP
to the moto S3 server."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import grpc
import numpy as np
import pytest
from numpy.lib import format as npy_format

from advex.storage import artifacts, server
from advex.core.sql import create_engine
from advex.storage.registry import READY as READY_STATE
from advex.storage.registry import ArtifactRecord, Registry
from advex.storage.verify import DatasetSummary, ModelSummary
from advex.v1 import artifact_pb2

MODEL = artifact_pb2.ARTIFACT_KIND_MODEL
DATASET = artifact_pb2.ARTIFACT_KIND_DATASET
PATTERN = artifact_pb2.ARTIFACT_KIND_PATTERN
READY = artifact_pb2.ARTIFACT_STATE_READY
TOO_BIG = grpc.StatusCode.RESOURCE_EXHAUSTED
REJECTED = artifact_pb2.ARTIFACT_STATE_REJECTED
PENDING = artifact_pb2.ARTIFACT_STATE_PENDING_UPLOAD


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def rpc_error(call, *args) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args)
    return caught.value


def assert_rejected(
    storage, body: bytes, kind, phrase: str, code=grpc.StatusCode.INVALID_ARGUMENT, **declared
) -> artifact_pb2.Artifact:
    """Uploads `body`, expects CompleteUpload to refuse it with `phrase`, and
    checks that the artifact is REJECTED with nothing left in the bucket, and
    that listing artifacts still works."""
    created = storage.upload(kind, body, **declared)
    name = created.artifact.name
    error = rpc_error(storage.complete, name)
    assert error.code() == code, error.details()
    assert phrase in error.details()
    artifact = storage.get(name)
    assert artifact.state == REJECTED
    assert phrase in artifact.rejection_reason
    assert not artifact.HasField("model") and not artifact.HasField("dataset") and not artifact.HasField("pattern")
    assert storage.object_keys() == []
    # Asking again does not re-verify: it says the upload was rejected.
    again = rpc_error(storage.complete, name)
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "was rejected" in again.details() and "CreateUpload" in again.details()
    listed = storage.stub.ListArtifacts(artifact_pb2.ListArtifactsRequest())
    assert name in [a.name for a in listed.artifacts]
    return artifact


def test_model_and_dataset_upload_verify_download_list_delete(storage, digits_files):
    model_path, dataset_path = digits_files
    model_bytes, dataset_bytes = model_path.read_bytes(), dataset_path.read_bytes()

    created = storage.upload(MODEL, model_bytes, display_name="digits cnn")
    assert created.artifact.state == PENDING
    assert created.artifact.name.startswith("artifacts/")
    assert created.expire_time.seconds > created.artifact.create_time.seconds
    model = storage.complete(created.artifact.name)
    assert model.state == READY
    assert model.sha256 == hashlib.sha256(model_bytes).hexdigest()
    assert model.size_bytes == len(model_bytes)
    assert model.display_name == "digits cnn"
    assert model.model.model_class == "Sequential"
    assert model.model.layer_count == 6
    assert model.model.keras_version.startswith("3.")
    # CompleteUpload again is harmless and returns the same artifact.
    assert storage.complete(model.name) == model

    dataset_created = storage.upload(DATASET, dataset_bytes)
    dataset = storage.complete(dataset_created.artifact.name)
    assert dataset.state == READY
    assert dataset.dataset.samples == 359
    assert list(dataset.dataset.image_shape) == [8, 8, 1]
    assert dataset.dataset.dtype == "float32"
    assert (dataset.dataset.min_label, dataset.dataset.max_label) == (0, 9)
    assert list(dataset.dataset.class_names) == [str(d) for d in range(10)]

    # Only verified objects remain, under server-made keys.
    assert storage.object_keys() == sorted(
        [f"models/{model.name.split('/')[1]}", f"datasets/{dataset.name.split('/')[1]}"]
    )

    download = storage.stub.GetDownloadUrl(artifact_pb2.GetDownloadUrlRequest(name=model.name))
    assert download.sha256 == model.sha256 and download.size_bytes == len(model_bytes)
    assert download.expire_time.seconds > 0
    assert storage.fetch(download.url) == model_bytes

    listed, token = [], ""
    for _ in range(3):
        page = storage.stub.ListArtifacts(artifact_pb2.ListArtifactsRequest(page_size=1, page_token=token))
        assert len(page.artifacts) <= 1
        listed += [a.name for a in page.artifacts]
        token = page.next_page_token
        if not token:
            break
    assert listed == [dataset.name, model.name]  # newest first
    assert token == ""
    only_models = storage.stub.ListArtifacts(artifact_pb2.ListArtifactsRequest(kind=MODEL))
    assert [a.name for a in only_models.artifacts] == [model.name]

    storage.stub.DeleteArtifact(artifact_pb2.DeleteArtifactRequest(name=model.name))
    error = rpc_error(storage.get, model.name)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert model.name in error.details()
    assert storage.object_keys() == [f"datasets/{dataset.name.split('/')[1]}"]


def test_pattern_upload_verify_list_download(storage, small_digits_dataset):
    pattern = np.zeros((3, 3, 1), np.float32)
    pattern[::2, ::2] = 1.0
    mask = np.zeros((3, 3), np.uint8)
    mask[:2, :2] = 1
    body = npz_bytes(pattern=pattern, mask=mask)
    created = storage.upload(PATTERN, body, display_name="corner trigger")
    assert (created.artifact.kind, created.artifact.state) == (PATTERN, PENDING)
    artifact = storage.complete(created.artifact.name)
    assert (artifact.kind, artifact.state, artifact.display_name) == (PATTERN, READY, "corner trigger")
    assert list(artifact.pattern.pattern_shape) == [3, 3, 1]
    assert list(artifact.pattern.mask_shape) == [3, 3]
    assert (artifact.pattern.min_value, artifact.pattern.max_value) == (0.0, 1.0)
    assert not artifact.HasField("model") and not artifact.HasField("dataset")
    assert storage.get(artifact.name) == artifact
    pattern_key = f"patterns/{artifact.name.split('/')[1]}"
    assert storage.object_keys() == [pattern_key]

    dataset = storage.complete(storage.upload(DATASET, small_digits_dataset.read_bytes()).artifact.name)
    only_patterns = storage.stub.ListArtifacts(artifact_pb2.ListArtifactsRequest(kind=PATTERN)).artifacts
    assert [a.name for a in only_patterns] == [artifact.name]
    assert only_patterns[0].pattern == artifact.pattern
    only_datasets = storage.stub.ListArtifacts(artifact_pb2.ListArtifactsRequest(kind=DATASET)).artifacts
    assert [a.name for a in only_datasets] == [dataset.name]

    download = storage.stub.GetDownloadUrl(artifact_pb2.GetDownloadUrlRequest(name=artifact.name))
    assert storage.fetch(download.url) == body


@pytest.mark.parametrize(
    "arrays, phrase",
    [
        ({"pattern": np.zeros((3, 3, 1), np.float32), "mask": np.full((3, 3), 1.5)},
         "mask values span 1.5..1.5 but must lie in 0..1"),
        ({"pattern": np.zeros((3, 3), np.float32), "mask": np.ones((3, 3))},
         "pattern has shape (3, 3); it must be (H, W, C): add a channel axis with pattern[..., None]"),
        ({"pattern": np.array([None] * 9, dtype=object).reshape(3, 3, 1), "mask": np.ones((3, 3))},
         "array 'pattern' holds Python objects (dtype=object); AdvEx never unpickles"),
        ({"x": np.zeros((2, 3, 3, 1)), "y": np.zeros(2, np.int64)}, "the .npz has no array 'pattern' or 'mask'"),
    ],
)
def test_bad_pattern_is_rejected_with_the_reason(storage, arrays, phrase):
    artifact = assert_rejected(storage, npz_bytes(**arrays), PATTERN, phrase)
    assert artifact.kind == PATTERN


def test_concurrent_complete_uploads_agree(storage, small_digits_dataset):
    body = small_digits_dataset.read_bytes()
    name = storage.upload(DATASET, body).artifact.name
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: storage.complete(name), range(4)))
    assert {r.state for r in results} == {READY}
    assert {r.dataset.samples for r in results} == {64}
    assert storage.object_keys() == [f"datasets/{name.split('/')[1]}"]


def test_truncated_model_is_rejected(storage, digits_files):
    body = digits_files[0].read_bytes()
    assert_rejected(storage, body[: len(body) // 2], MODEL, "not a complete zip archive")


def test_non_zip_model_is_rejected(storage):
    assert_rejected(storage, b"this is not a keras model\n" * 50, MODEL, "not a complete zip archive")


def test_zip_without_keras_files_is_rejected(storage):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("saved_model.pb", b"\0" * 100)
    assert_rejected(storage, buffer.getvalue(), MODEL, "lacks config.json, metadata.json, model.weights.h5")


def test_model_with_lambda_layer_is_rejected(storage, lambda_model_file):
    body = lambda_model_file.read_bytes()
    artifact = assert_rejected(storage, body, MODEL, "contains a Lambda layer at with_lambda/double")
    assert "arbitrary Python code" in artifact.rejection_reason


def test_dataset_with_object_array_is_rejected(storage):
    body = npz_bytes(x=np.zeros((3, 8, 8, 1), np.float32), y=np.array([1, "a", None], dtype=object))
    assert_rejected(storage, body, DATASET, "array 'y' holds Python objects (dtype=object); AdvEx never unpickles")


def test_dataset_without_labels_is_rejected(storage):
    body = npz_bytes(x=np.zeros((3, 8, 8, 1), np.float32))
    assert_rejected(storage, body, DATASET, "the .npz has no array 'y'")


def test_sha256_mismatch_is_rejected(storage, small_digits_dataset):
    body = small_digits_dataset.read_bytes()
    declared = hashlib.sha256(b"some other file").hexdigest()
    artifact = assert_rejected(storage, body, DATASET, f"but {declared} was declared", sha256=declared)
    assert "corrupted in transit" in artifact.rejection_reason


def test_upload_larger_than_declared_is_refused(storage, small_digits_dataset):
    body = small_digits_dataset.read_bytes()
    created = storage.create(DATASET, body[:-100], size=len(body) - 100)
    name = created.artifact.name
    status = storage.put(created, body)
    if status != 200:
        # A store that enforces the signed Content-Length refuses the PUT outright.
        assert storage.object_keys() == []
        return
    error = rpc_error(storage.complete, name)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"upload is {len(body)} bytes but {len(body) - 100} were declared" in error.details()
    assert storage.get(name).state == REJECTED
    assert storage.object_keys() == []


def test_upload_smaller_than_declared_is_rejected(storage, small_digits_dataset):
    body = small_digits_dataset.read_bytes()
    created = storage.create(DATASET, body, size=len(body) + 10)
    assert storage.put(created, body) == 200 or storage.object_keys() == []
    error = rpc_error(storage.complete, created.artifact.name)
    assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)
    assert storage.get(created.artifact.name).state != READY
    assert storage.object_keys() == []


def test_complete_before_put_is_a_failed_precondition(storage):
    created = storage.create(DATASET, b"not uploaded yet")
    error = rpc_error(storage.complete, created.artifact.name)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "PUT the file first" in error.details()
    assert storage.get(created.artifact.name).state == PENDING
    download = rpc_error(storage.stub.GetDownloadUrl, artifact_pb2.GetDownloadUrlRequest(name=created.artifact.name))
    assert download.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "PENDING_UPLOAD" in download.details()


@pytest.mark.parametrize(
    "method, request_type",
    [
        ("GetArtifact", artifact_pb2.GetArtifactRequest),
        ("CompleteUpload", artifact_pb2.CompleteUploadRequest),
        ("GetDownloadUrl", artifact_pb2.GetDownloadUrlRequest),
        ("DeleteArtifact", artifact_pb2.DeleteArtifactRequest),
    ],
)
@pytest.mark.parametrize("name", ["artifacts/0123456789abcdef0123", "artifacts/../../etc/passwd", "models/x"])
def test_unknown_artifact_is_not_found(storage, method, request_type, name):
    error = rpc_error(getattr(storage.stub, method), request_type(name=name))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert name in error.details()


def test_malformed_page_token_is_invalid(storage):
    error = rpc_error(storage.stub.ListArtifacts, artifact_pb2.ListArtifactsRequest(page_token="not-a-token"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in error.details()


@pytest.mark.parametrize(
    "request_fields, code, phrase",
    [
        ({"size_bytes": 0}, grpc.StatusCode.INVALID_ARGUMENT, "size_bytes must be the exact size"),
        ({"size_bytes": -5}, grpc.StatusCode.INVALID_ARGUMENT, "size_bytes must be the exact size"),
        ({"size_bytes": 3 * 1024**3}, grpc.StatusCode.RESOURCE_EXHAUSTED, "accepts uploads of at most"),
        ({"kind": artifact_pb2.ARTIFACT_KIND_UNSPECIFIED}, grpc.StatusCode.INVALID_ARGUMENT, "kind is required"),
        ({"sha256": "abc"}, grpc.StatusCode.INVALID_ARGUMENT, "64 hex digits"),
        ({"sha256": "g" * 64}, grpc.StatusCode.INVALID_ARGUMENT, "64 hex digits"),
        ({"display_name": "x" * 201}, grpc.StatusCode.INVALID_ARGUMENT, "at most 200"),
        ({"display_name": "a\x00b"}, grpc.StatusCode.INVALID_ARGUMENT, "control characters"),
    ],
)
def test_create_upload_checks_its_arguments(storage, request_fields, code, phrase):
    fields = {"kind": MODEL, "display_name": "m", "size_bytes": 10, "sha256": "A" * 64, **request_fields}
    error = rpc_error(storage.stub.CreateUpload, artifact_pb2.CreateUploadRequest(**fields))
    assert error.code() == code
    assert phrase in error.details()
    assert storage.stub.ListArtifacts(artifact_pb2.ListArtifactsRequest()).artifacts == []


def test_create_upload_normalises_sha256_and_signs_the_size(storage):
    created = storage.stub.CreateUpload(
        artifact_pb2.CreateUploadRequest(kind=MODEL, display_name="m", size_bytes=10, sha256="AB" * 32)
    )
    assert created.artifact.sha256 == "ab" * 32
    assert created.upload_headers["Content-Length"] == "10"
    assert "content-length" in created.upload_url.lower()  # among X-Amz-SignedHeaders


# ------------------------------------------ bad uploads end REJECTED, cleanly


def zip_bytes(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


X_SMALL = np.zeros((2, 4, 4, 1), np.uint8)
Y_SMALL = np.array([0, 1], np.int64)


def test_dataset_over_the_configured_size_is_resource_exhausted(storage_with):
    storage = storage_with(max_dataset_bytes=2048)
    assert_rejected(
        storage,
        npz_bytes(x=np.zeros((9, 8, 8, 1), np.uint8), y=np.zeros(9, np.int64)),
        DATASET,
        "2304 bytes as float32 (the form attacks use); this server accepts datasets of at most 2048 bytes",
        code=grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    fits = storage.upload(DATASET, npz_bytes(x=np.zeros((8, 8, 8, 1), np.uint8), y=np.zeros(8, np.int64)))
    assert storage.complete(fits.artifact.name).state == READY


def test_zip_limits_come_from_the_configuration(storage_with):
    # A dataset limit of 16 KiB allows members of about 1 MiB: a 4 MiB member
    # (4 KiB deflated) is refused from the zip directory, before it expands.
    storage = storage_with(max_dataset_bytes=16 << 10)
    junk = zip_bytes({"x.npy": npy_bytes(X_SMALL), "y.npy": npy_bytes(Y_SMALL), "junk.npy": bytes(4 << 20)},
                     zipfile.ZIP_DEFLATED)
    assert len(junk) < 64 << 10
    assert_rejected(storage, junk, DATASET, f"'junk.npy' in the .npz dataset expands to {4 << 20} bytes", code=TOO_BIG)
    # Models: members may expand to about 4x the largest upload.
    small_uploads = storage_with(max_upload_bytes=64 << 10)
    model = zip_bytes({"metadata.json": b"{}", "config.json": b" " * (6 << 20), "model.weights.h5": b"\x89HDF"},
                      zipfile.ZIP_DEFLATED)
    assert_rejected(
        small_uploads, model, MODEL, f"'config.json' in the Keras 3 .keras file expands to {6 << 20} bytes", code=TOO_BIG
    )


def test_every_size_limit_answers_resource_exhausted(storage):
    """What the README promises: over a size limit, RESOURCE_EXHAUSTED with
    the figure and the limit (here config.json's 64 MiB, read whole)."""
    config = b" " * (65 << 20)
    model = zip_bytes({"metadata.json": b"{}", "config.json": config, "model.weights.h5": b"\x89HDF"},
                      zipfile.ZIP_DEFLATED)
    assert len(model) < 1 << 20
    assert_rejected(storage, model, MODEL, f"'config.json' in the Keras 3 .keras file is {65 << 20} bytes; at most "
                    f"{64 << 20} are accepted", code=TOO_BIG)
    files = {f"f{i}": b"" for i in range(10_001)}
    assert_rejected(storage, zip_bytes({"x.npy": npy_bytes(X_SMALL), "y.npy": npy_bytes(Y_SMALL), **files}), DATASET,
                    "holds 10003 files; at most 10000 are accepted", code=TOO_BIG)


@pytest.mark.parametrize(
    "class_names, phrase, code",
    [
        # MemoryError and OverflowError once; now refused from the header.
        (npy_header("<U100000000", (1_000_000,)) + b"\0" * 100, "class_names lists 1000000 names", TOO_BIG),
        (npy_header("<U4", (2**100,)), f"class_names lists {2**100} names", TOO_BIG),
        (npy_bytes(np.array(["a", "b"])).replace((0x62).to_bytes(4, "little"), (0xD800).to_bytes(4, "little")),
         "class_names[1] ('\\ud800') is not valid Unicode text", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_crafted_class_names_are_rejected_cleanly(storage, class_names, phrase, code):
    body = zip_bytes({"x.npy": npy_bytes(X_SMALL), "y.npy": npy_bytes(Y_SMALL), "class_names.npy": class_names})
    assert_rejected(storage, body, DATASET, phrase, code=code)


def test_labels_beyond_int64_are_rejected_and_listing_still_works(storage, small_digits_dataset):
    good = storage.upload(DATASET, small_digits_dataset.read_bytes())
    assert storage.complete(good.artifact.name).state == READY
    created = storage.upload(DATASET, npz_bytes(x=X_SMALL, y=np.array([0, 2**64 - 1], np.uint64)))
    error = rpc_error(storage.complete, created.artifact.name)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "y contains the label 18446744073709551615; labels are class indices" in error.details()
    assert storage.get(created.artifact.name).state == REJECTED
    listed = storage.stub.ListArtifacts(artifact_pb2.ListArtifactsRequest())
    assert [a.state for a in listed.artifacts] == [REJECTED, READY]
    assert storage.get(good.artifact.name).dataset.samples == 64
    assert storage.object_keys() == [f"datasets/{good.artifact.name.split('/')[1]}"]


@pytest.mark.parametrize(
    "metadata, phrase",
    [
        (b'{"keras_version": "\\ud800"}', "names the Keras version '\\ud800', which is not a version number"),
        (json.dumps({"keras_version": "3." + "9" * 6_000_000}).encode(), "names the Keras version '3.9999"),
    ],
)
def test_model_summaries_that_cannot_be_listed_are_rejected(storage, digits_files, metadata, phrase):
    with zipfile.ZipFile(digits_files[0]) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["metadata.json"] = metadata
    assert_rejected(storage, zip_bytes(members, zipfile.ZIP_DEFLATED), MODEL, phrase)


def test_unexpected_failure_while_verifying_rejects_the_upload(storage, monkeypatch, small_digits_dataset):
    def crash(path, limits):
        raise MemoryError()

    monkeypatch.setitem(artifacts._VERIFIERS, "dataset", crash)
    artifact = assert_rejected(storage, small_digits_dataset.read_bytes(), DATASET,
                               "could not verify the upload: MemoryError")
    assert "numpy.savez" in artifact.rejection_reason


@pytest.mark.parametrize(
    "summary, phrase, code",
    [
        (DatasetSummary(2, (4, 4, 1), "uint8", 0, 2**64, ()), "what it reports cannot be sent to clients (ValueError)",
         grpc.StatusCode.INVALID_ARGUMENT),
        (DatasetSummary(2, (4, 4, 1), "uint8", 0, 1, ("a\ud800", "b")), "cannot be sent to clients",
         grpc.StatusCode.INVALID_ARGUMENT),
        (DatasetSummary(2, (4, 4, 1), "uint8", 0, 1, ("n" * 200,) * 12_000), "at most 2097152 are accepted", TOO_BIG),
    ],
)
def test_summary_is_checked_to_be_sendable_before_ready(
    storage, monkeypatch, small_digits_dataset, summary, phrase, code
):
    """A backstop behind verify.py's own checks: whatever slips past them
    makes the upload REJECTED, not a READY record no one can list."""
    monkeypatch.setitem(artifacts._VERIFIERS, "dataset", lambda path, limits: summary)
    assert_rejected(storage, small_digits_dataset.read_bytes(), DATASET, phrase, code=code)


def test_losing_the_race_to_a_rejection_leaves_no_final_object(storage, monkeypatch, small_digits_dataset):
    """Another CompleteUpload rejects the artifact between this one's copy to
    the final key and its mark_ready: that copy must not stay behind."""
    mark_ready = Registry.mark_ready

    def rejected_meanwhile(self, artifact_id, summary):
        assert self.mark_rejected(artifact_id, "rejected by a concurrent CompleteUpload")
        return mark_ready(self, artifact_id, summary)

    monkeypatch.setattr(Registry, "mark_ready", rejected_meanwhile)
    created = storage.upload(DATASET, small_digits_dataset.read_bytes())
    error = rpc_error(storage.complete, created.artifact.name)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "changed state while it was being verified" in error.details()
    assert storage.get(created.artifact.name).state == REJECTED
    assert storage.object_keys() == []


def test_list_pages_stop_before_they_get_too_big_to_receive(storage, monkeypatch):
    names = []
    for i in range(3):
        created = storage.upload(DATASET, npz_bytes(x=X_SMALL, y=Y_SMALL))
        names.append(storage.complete(created.artifact.name).name)
    monkeypatch.setattr(server, "LIST_PAGE_BUDGET_BYTES", 1)
    listed, token, pages = [], "", 0
    while True:
        page = storage.stub.ListArtifacts(artifact_pb2.ListArtifactsRequest(page_size=10, page_token=token))
        assert len(page.artifacts) == 1  # never empty, never over budget beyond one artifact
        listed += [a.name for a in page.artifacts]
        token, pages = page.next_page_token, pages + 1
        if not token:
            break
    assert (listed, pages) == (names[::-1], 3)


def test_a_record_poisoned_before_these_checks_does_not_break_listing(storage, small_digits_dataset):
    """READY records stored by an older version with an unsendable summary
    are listed without it instead of failing every ListArtifacts."""
    good = storage.complete(storage.upload(DATASET, small_digits_dataset.read_bytes()).artifact.name)
    engine = create_engine(storage.config.database_url, "ADVEX_STORAGE_DATABASE_URL")
    try:
        now = datetime.now(UTC)
        Registry(engine).insert(ArtifactRecord(
            id="zzzzzzzzzzzzzzzzzzzz", kind="model", display_name="old", state=READY_STATE,
            object_key="models/zzzzzzzzzzzzzzzzzzzz", size_bytes=1, sha256="0" * 64, rejection_reason="",
            summary=ModelSummary("\ud800", "Sequential", 1), create_time=now, update_time=now,
        ))
    finally:
        engine.dispose()
    listed = storage.stub.ListArtifacts(artifact_pb2.ListArtifactsRequest()).artifacts
    assert [a.name for a in listed] == ["artifacts/zzzzzzzzzzzzzzzzzzzz", good.name]
    assert not listed[0].HasField("model") and listed[1].dataset.samples == 64


def _late_put(storage, body: bytes, *, valid: bool) -> artifact_pb2.CreateUploadResponse:
    """An upload settled READY (or REJECTED), then PUT again through its
    still-valid URL: the staging object nothing reads."""
    declared = {} if valid else {"sha256": hashlib.sha256(b"another file").hexdigest()}
    created = storage.upload(DATASET, body, **declared)
    if valid:
        assert storage.complete(created.artifact.name).state == READY
    else:
        rpc_error(storage.complete, created.artifact.name)
    assert storage.put(created, body) == 200
    assert f"uploads/{created.artifact.name.split('/')[1]}" in storage.object_keys()
    return created


@pytest.mark.parametrize("valid", [True, False], ids=["ready", "rejected"])
def test_a_late_put_is_removed_by_complete_upload_called_again(storage, small_digits_dataset, valid):
    created = _late_put(storage, small_digits_dataset.read_bytes(), valid=valid)
    name = created.artifact.name
    if valid:
        assert storage.complete(name).state == READY  # the verified object is untouched
    else:
        assert rpc_error(storage.complete, name).code() == grpc.StatusCode.FAILED_PRECONDITION
    assert not [key for key in storage.object_keys() if key.startswith("uploads/")]


def test_the_sweep_removes_late_puts_and_keeps_pending_uploads(storage_with, small_digits_dataset):
    first = storage_with()
    body = small_digits_dataset.read_bytes()
    ready = _late_put(first, body, valid=True)
    rejected = _late_put(first, body, valid=False)
    deleted = _late_put(first, body, valid=True)
    first.stub.DeleteArtifact(artifact_pb2.DeleteArtifactRequest(name=deleted.artifact.name))
    first.put(deleted, body)  # the URL outlives the artifact
    pending = first.upload(DATASET, body)  # PUT, CompleteUpload not called yet
    staged = {c.artifact.name.split("/")[1] for c in (ready, rejected, deleted, pending)}
    assert {f"uploads/{i}" for i in staged} <= set(first.object_keys())

    # A storage server sweeps when it starts (and every ADVEX_STAGING_SWEEP_S).
    second = storage_with(staging_sweep_s=0)
    staging = [key for key in second.object_keys() if key.startswith("uploads/")]
    assert staging == [f"uploads/{pending.artifact.name.split('/')[1]}"]
    assert second.complete(pending.artifact.name).state == READY  # still completes
    assert second.fetch(second.stub.GetDownloadUrl(
        artifact_pb2.GetDownloadUrlRequest(name=ready.artifact.name)).url) == body
