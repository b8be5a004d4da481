"""The attack service over real gRPC on loopback, reading its inputs through
presigned URLs from the moto S3 server."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from advex.attack.config import AttackConfig
from advex.attack.server import AttackServicer, create_server
from advex.cli import digits
from advex.cli.client import file_digest
from advex.core.tensors import MAX_MESSAGE_BYTES, ChunkAssembler, from_proto
from advex.internal.v1 import attack_service_pb2 as pb
from advex.internal.v1 import attack_service_pb2_grpc
from advex.v1 import evasion_pb2

import crafted_files

# Small enough for a test to exceed with a few KB file, big enough for the
# digits test set (360 images of 8x8x1).
DATASET_BUDGET = 1024**2


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """(stub, servicer) of a running attack service."""
    config = AttackConfig(
        address="127.0.0.1:0", cache_dir=str(tmp_path_factory.mktemp("attack-cache")), batch_size=32,
        max_dataset_bytes=DATASET_BUDGET,
    )
    servicer = AttackServicer(config)
    running, port = create_server(config.address, config, servicer)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield attack_service_pb2_grpc.AttackServiceStub(channel), servicer
    channel.close()
    running.stop(grace=None)


@pytest.fixture
def stub(service):
    return service[0]


def fgsm(eps=0.1):
    return evasion_pb2.AttackSpec(attack="fgsm", eps=eps)


def evasion(model, dataset, attack=None, **fields):
    fields = {"clip_min": 0.0, "clip_max": 1.0, **fields}
    return pb.RunEvasionRequest(model=model, dataset=dataset, attack=attack or fgsm(), **fields)


def error_of(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        result = call()
        if not isinstance(result, pb.InspectModelResponse | pb.CheckCompatibilityResponse):
            list(result)
    return info.value


def test_inspect_and_check_compatibility(stub, publish, digits_files, digits_logits_model_file):
    model, dataset = publish(digits_files[0]), publish(digits_files[1])
    info = stub.InspectModel(pb.InspectModelRequest(model=model)).model
    assert list(info.input_shape) == [8, 8, 1] and info.num_classes == 10
    assert info.logits_source == pb.LOGITS_SOURCE_STRIPPED_SOFTMAX and info.outputs_probabilities
    logits = stub.InspectModel(pb.InspectModelRequest(model=publish(digits_logits_model_file))).model
    assert logits.logits_source == pb.LOGITS_SOURCE_NATIVE and not logits.outputs_probabilities

    reply = stub.CheckCompatibility(pb.CheckCompatibilityRequest(model=model, dataset=dataset, clip_min=0, clip_max=1))
    split = digits.load_digits_split()
    assert reply.model == info
    assert reply.dataset.samples == len(split.y_test) and list(reply.dataset.image_shape) == [8, 8, 1]
    assert reply.dataset.dtype == "float32" and (reply.dataset.min_label, reply.dataset.max_label) == (0, 9)
    assert 0.0 <= reply.dataset.min_value < reply.dataset.max_value <= 1.0


def test_records_cover_the_range_in_bounded_messages(stub, publish, digits_files, digits_split):
    request = evasion(publish(digits_files[0]), publish(digits_files[1]), start=5, stop=150, batch_size=64)
    messages = list(stub.RunEvasion(request))
    assert all(m.ByteSize() <= MAX_MESSAGE_BYTES for m in messages)
    # The documented order: what computes the stream, the records, a few examples.
    kinds = [m.WhichOneof("payload") for m in messages]
    assert kinds[0] == "engine" and kinds[-1] == "examples" and set(kinds[1:-1]) == {"records"}
    versions = messages[0].engine.versions
    assert versions["keras_backend"] == "tensorflow" and {"keras", "tensorflow", "numpy", "advex"} <= set(versions)
    examples = messages[-1].examples
    samples = np.asarray(examples.samples)
    assert 0 < len(samples) <= 8 and samples.min() >= 5 and samples.max() < 150
    np.testing.assert_array_equal(examples.labels, digits_split.y_test[samples])
    clean = from_proto(examples.clean)
    assert clean.dtype == np.float16 and clean.shape == (len(samples), 8, 8, 1)
    np.testing.assert_allclose(clean, digits_split.x_test[samples], atol=1e-3)
    assert np.abs(from_proto(examples.adversarial).astype(np.float32) - clean).max() <= 0.1 + 1e-3
    # FGSM at 0.1 breaks some digits: those come first.
    broke = np.asarray(examples.adversarial_predictions) != np.asarray(examples.labels)
    assert broke[0] and list(broke) == sorted(broke, reverse=True)
    covered, labels = [], []
    for m in messages[1:-1]:
        n = from_proto(m.records.labels).shape[0]
        covered.append((m.records.first_sample, m.records.first_sample + n))
        labels.append(from_proto(m.records.labels))
        assert from_proto(m.records.adversarial_probabilities).shape == (n, 10)
    assert covered[0][0] == 5 and covered[-1][1] == 150
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))
    np.testing.assert_array_equal(np.concatenate(labels), digits_split.y_test[5:150])


def test_adversarial_images_reassemble_under_a_small_message_limit(
    stub, publish, digits_files, small_digits_dataset, digits_split
):
    limit = 8192
    request = evasion(
        publish(digits_files[0]), publish(small_digits_dataset),
        attack=evasion_pb2.AttackSpec(attack="pgd", eps=0.2, steps=3),
        include_adversarial_images=True, max_message_bytes=limit, batch_size=40, seed=3,
    )
    assembler, images, records = ChunkAssembler(), {}, []
    for m in stub.RunEvasion(request):
        assert m.ByteSize() <= limit
        kind = m.WhichOneof("payload")
        if kind == "records":
            records.append(m.records)
        elif kind == "adversarial_images":
            # Documented order: a batch's records come before its images.
            assert records and records[-1].first_sample >= m.adversarial_images.first_sample
            done = assembler.add(m.adversarial_images)
            if done:
                images[done[0]] = done[1]
    assert sorted(images) == [0, 40]
    adversarial = np.concatenate([images[0], images[40]])
    assert adversarial.shape == (64, 8, 8, 1) and adversarial.dtype == np.float32
    linf = np.concatenate([from_proto(r.perturbation_linf) for r in records])
    l2 = np.concatenate([from_proto(r.perturbation_l2) for r in records])
    delta = (adversarial - digits_split.x_test[:64]).reshape(64, -1)
    np.testing.assert_allclose(linf, np.abs(delta).max(1), rtol=1e-6)
    np.testing.assert_allclose(l2, np.sqrt((delta.astype(np.float64) ** 2).sum(1)), rtol=1e-5)
    assert 0.0 < linf.max() <= 0.2 + 1e-6


def test_bad_models_are_refused_with_reasons(stub, publish, lambda_model_file, digits_files, tmp_path):
    path, marker = lambda_model_file
    err = error_of(lambda: stub.InspectModel(pb.InspectModelRequest(model=publish(path))))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "Lambda" in err.details()
    assert not marker.exists()

    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(digits_files[0].read_bytes()[:5000])
    err = error_of(lambda: stub.InspectModel(pb.InspectModelRequest(model=publish(truncated))))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a zip archive" in err.details()


def test_hostile_models_get_final_statuses_that_say_what_to_fix(stub, publish, tmp_path):
    cases = [
        (crafted_files.huge_input_model(tmp_path), grpc.StatusCode.RESOURCE_EXHAUSTED,
         "ADVEX_ATTACK_MAX_INPUT_ELEMENTS"),
        (crafted_files.unbuilt_sequential(tmp_path), grpc.StatusCode.INVALID_ARGUMENT, "no defined input"),
        (crafted_files.deeply_nested_config(tmp_path), grpc.StatusCode.INVALID_ARGUMENT, "nested too deeply"),
    ]
    for path, code, message in cases:
        err = error_of(lambda: stub.InspectModel(pb.InspectModelRequest(model=publish(path))))
        assert err.code() == code and message in err.details(), (path.name, err.code(), err.details())


def test_dataset_bomb_is_resource_exhausted(stub, publish, digits_files, tmp_path):
    # 100 zero images of 64x64x3: a few KB deflated, 4.9 MB as float32.
    bomb = crafted_files.npz_with_header(
        tmp_path / "bomb.npz",
        {"descr": "|u1", "fortran_order": False, "shape": (100, 64, 64, 3)},
        bytes(100 * 64 * 64 * 3),
        np.zeros(100, dtype=np.int64),
    )
    model, dataset = publish(digits_files[0]), publish(bomb)
    request = pb.CheckCompatibilityRequest(model=model, dataset=dataset, clip_min=0, clip_max=1)
    err = error_of(lambda: stub.CheckCompatibility(request))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "ADVEX_MAX_DATASET_BYTES" in err.details() and "images per dataset" in err.details()


def test_running_out_of_memory_mid_attack_is_resource_exhausted(
    stub, publish, digits_files, small_digits_dataset, monkeypatch
):
    from advex.attack import engine

    def run_evasion(*args, **kwargs):
        raise MemoryError()
        yield  # a generator, like the real one

    monkeypatch.setattr(engine, "run_evasion", run_evasion)
    err = error_of(lambda: stub.RunEvasion(evasion(publish(digits_files[0]), publish(small_digits_dataset))))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "pass a smaller batch_size" in err.details()


def test_download_failures_are_transient_only_when_the_network_failed(stub):
    import socket

    # A digest nothing is cached under, so the service must download.
    good = pb.ObjectLocation(sha256="b" * 64, size_bytes=100)
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    unreachable = pb.ObjectLocation(url=f"http://127.0.0.1:{closed}/x", sha256=good.sha256, size_bytes=good.size_bytes)
    err = error_of(lambda: stub.InspectModel(pb.InspectModelRequest(model=unreachable)))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    malformed = pb.ObjectLocation(url="http://[::1/x", sha256=good.sha256, size_bytes=good.size_bytes)
    err = error_of(lambda: stub.InspectModel(pb.InspectModelRequest(model=malformed)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a valid URL" in err.details()


def test_an_old_keras_stops_the_service_from_starting(monkeypatch, tmp_path):
    import keras

    monkeypatch.setattr(keras, "__version__", "3.8.0")
    with pytest.raises(RuntimeError, match="CVE-2025-1550"):
        create_server("127.0.0.1:0", AttackConfig(address="127.0.0.1:0", cache_dir=str(tmp_path)))


def test_incompatible_datasets_are_refused_with_reasons(stub, publish, digits_files, tmp_path):
    model = publish(digits_files[0])
    rng = np.random.default_rng(0)
    cases = {
        "labels": (rng.uniform(0, 1, (4, 8, 8, 1)), np.array([0, 10, 11, 12]), "labels 0..12 are outside"),
        "shape": (rng.uniform(0, 1, (4, 28, 28, 1)), np.zeros(4, int), "28x28x1 but the model expects 8x8x1"),
        "range": (rng.uniform(0, 255, (4, 8, 8)).astype(np.uint8), np.zeros(4, int), "pass clip_max="),
    }
    for name, (x, y, message) in cases.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, x=x.astype(np.float32) if x.dtype != np.uint8 else x, y=y)
        request = pb.CheckCompatibilityRequest(model=model, dataset=publish(path), clip_min=0, clip_max=1)
        err = error_of(lambda: stub.CheckCompatibility(request))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.details(), (name, err.details())
        err = error_of(lambda: stub.RunEvasion(evasion(model, publish(path))))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.details(), (name, err.details())


def test_digest_mismatch_is_a_failed_precondition(stub, publish, digits_files):
    wrong = "0" * 64
    err = error_of(lambda: stub.InspectModel(pb.InspectModelRequest(model=publish(digits_files[0], sha256=wrong))))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert wrong in err.details() and file_digest(digits_files[0])[1] in err.details()


@pytest.mark.parametrize(
    "attack, fields, message",
    [
        (evasion_pb2.AttackSpec(attack="deepfool", eps=0.1), {}, "unknown attack 'deepfool'"),
        (evasion_pb2.AttackSpec(attack="pgd", eps=0.1, steps=0), {}, "steps must be between 1"),
        (evasion_pb2.AttackSpec(attack="pgd", eps=-0.1), {}, "eps must be >= 0"),
        (fgsm(), {"start": 64}, "sample range [64, 64)"),
        (fgsm(), {"start": 10, "stop": 65}, "sample range [10, 65)"),
        (fgsm(), {"stop": -1}, "must be >= 0"),
        (fgsm(), {"max_message_bytes": 4096}, "max_message_bytes must be between 8192"),
        (fgsm(), {"clip_min": 1.0, "clip_max": 0.0}, "clip_min (1) must be below clip_max (0)"),
    ],
)
def test_bad_evasion_requests_are_invalid_arguments(
    stub, publish, digits_files, small_digits_dataset, attack, fields, message
):
    request = evasion(publish(digits_files[0]), publish(small_digits_dataset), attack=attack, **fields)
    err = error_of(lambda: stub.RunEvasion(request))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.details(), err.details()


def test_cancelling_the_stream_stops_the_computation(service, publish, digits_files, small_digits_dataset):
    stub, servicer = service
    steps, batch_size, samples = 300, 8, 64
    request = evasion(
        publish(digits_files[0]), publish(small_digits_dataset),
        attack=evasion_pb2.AttackSpec(attack="pgd", eps=0.1, steps=steps), batch_size=batch_size,
    )
    passes_before = servicer.progress.passes
    finished_before = servicer.progress.evasions_finished
    call = stub.RunEvasion(request)
    assert next(call).HasField("engine")  # sent before any work
    first = next(call)
    assert first.records.first_sample == 0
    call.cancel()
    assert servicer.progress.wait_for(lambda p: p.evasions_finished > finished_before, timeout=60)
    assert call.code() == grpc.StatusCode.CANCELLED
    done = servicer.progress.passes - passes_before
    # The first batch, the one in flight when the cancel arrived and at most
    # one more that grpc may have pulled ahead, out of the samples / batch_size
    # batches the whole request would take.
    assert steps <= done <= 3 * steps < (samples // batch_size) * steps
