"""The attack service's poisoning RPCs over a real channel: CheckPoisoning,
the RunPoisoning conversation (products handed over through presigned PUTs
to the moto S3 server on loopback), StreamPoisonedData's byte bounds."""

from __future__ import annotations

import hashlib
import queue

import boto3
import botocore.config
import grpc
import numpy as np
import pytest

from advex.attack.config import AttackConfig
from advex.attack.server import AttackServicer, create_server
from advex.cli import digits
from advex.core import tensors
from advex.internal.v1 import attack_service_pb2 as pb
from advex.internal.v1 import attack_service_pb2_grpc
from advex.v1 import poisoning_pb2

from loopback_s3 import S3_CREDENTIALS


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    config = AttackConfig(address="127.0.0.1:0", cache_dir=str(tmp_path_factory.mktemp("cache")), batch_size=64)
    running, port = create_server(config.address, config, AttackServicer(config))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield attack_service_pb2_grpc.AttackServiceStub(channel)
    channel.close()
    running.stop(grace=None)


@pytest.fixture
def s3(s3_endpoint):
    return boto3.client(
        "s3", endpoint_url=s3_endpoint, **S3_CREDENTIALS,
        config=botocore.config.Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


@pytest.fixture
def inputs(publish, digits_files, digits_split, tmp_path):
    """PoisoningInputs over 300 training digits and 60 test digits: 1 -> 7,
    a 2x2 square, one epoch."""
    train = digits.save_dataset(tmp_path / "train.npz", digits_split.x_train[:300], digits_split.y_train[:300])
    test = digits.save_dataset(tmp_path / "test.npz", digits_split.x_test[:60], digits_split.y_test[:60])
    spec = poisoning_pb2.PoisoningSpec(
        training_dataset="artifacts/train", test_dataset="artifacts/test", kind="dirty",
        trigger=poisoning_pb2.TriggerSpec(trigger="square", size=2), source_classes=[1], target_class=7,
        counts=[5], training=poisoning_pb2.TrainingRecipe(epochs=1, batch_size=64),
    )
    return pb.PoisoningInputs(
        model=publish(digits_files[0]), training_dataset=publish(train), test_dataset=publish(test),
        spec=spec, clip_min=0.0, clip_max=1.0,
    )


def test_check_poisoning_resolves_sources_counts_and_steps(stub, inputs, digits_split):
    inputs.spec.fractions.append(0.5)
    reply = stub.CheckPoisoning(pb.CheckPoisoningRequest(inputs=inputs))
    pool = int((digits_split.y_train[:300] == 1).sum())
    assert list(reply.source_classes) == [1] and reply.pool_samples == pool
    assert list(reply.counts) == sorted({5, round(0.5 * pool)})
    assert reply.steps_per_model == 1 * int(np.ceil(300 / 64))
    assert reply.attacked_test_samples == int((digits_split.y_test[:60] == 1).sum())
    assert reply.model.num_classes == 10 and reply.training_dataset.samples == 300


def test_check_poisoning_says_what_to_fix(stub, inputs):
    inputs.spec.counts[:] = [10_000]
    with pytest.raises(grpc.RpcError) as info:
        stub.CheckPoisoning(pb.CheckPoisoningRequest(inputs=inputs))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "exceed the" in info.value.details()


def _conversation(stub, unit: pb.RunPoisoningUnit, answer):
    """Runs RunPoisoning; `answer(product)` returns the UploadTicket for it,
    or None to end the request stream instead. Returns the responses."""
    requests: queue.Queue = queue.Queue()
    requests.put(pb.RunPoisoningRequest(unit=unit))

    def stream():
        while (item := requests.get()) is not None:
            yield item

    responses = []
    try:
        for response in stub.RunPoisoning(stream()):
            responses.append(response)
            if response.HasField("product"):
                ticket = answer(response.product)
                requests.put(None if ticket is None else pb.RunPoisoningRequest(upload=ticket))
    finally:
        requests.put(None)
    return responses


def test_run_poisoning_hands_over_its_products_trains_and_streams_test_predictions(
    stub, inputs, s3, s3_bucket, digits_split
):
    def answer(product):
        key = f"made/{pb.ProductKind.Name(product.kind)}"
        url = s3.generate_presigned_url(
            "put_object", Params={"Bucket": s3_bucket, "Key": key, "ContentLength": product.size_bytes}, ExpiresIn=600
        )
        return pb.UploadTicket(url=url, method="PUT", headers={"Content-Length": str(product.size_bytes)})

    responses = _conversation(stub, pb.RunPoisoningUnit(inputs=inputs, poison_count=5, max_message_bytes=8192), answer)
    kinds = [r.WhichOneof("payload") for r in responses]
    # The documented order: the engine, the poisoned set, training, the model, the summary, the records.
    assert kinds[0] == "engine" and responses[0].engine.versions["keras_backend"] == "tensorflow"
    kinds = kinds[1:]
    assert kinds[:2] == ["product", "stored"]
    first_model = kinds.index("product", 2)
    assert set(kinds[2:first_model]) == {"progress"} and kinds[first_model + 1] == "stored"
    assert kinds[first_model + 2] == "summary" and set(kinds[first_model + 3:-1]) == {"records"}
    # Last, a few test images with the trigger, for the report's page.
    assert kinds[-1] == "examples"
    examples = responses[-1].examples
    clean = tensors.from_proto(examples.clean).astype(np.float32)
    stamped = tensors.from_proto(examples.adversarial).astype(np.float32)
    assert 0 < len(examples.samples) <= 8 and clean.shape == stamped.shape == (len(examples.samples), 8, 8, 1)
    # The 2x2 square is the only change the trigger makes.
    assert (stamped[:, 6:8, 6:8, :] == 1.0).all()
    np.testing.assert_array_equal(stamped[:, :6], clean[:, :6])
    np.testing.assert_array_equal(examples.labels, digits_split.y_test[:60][list(examples.samples)])
    progress = [r.progress for r in responses if r.HasField("progress")]
    assert progress[-1].epoch_end and progress[-1].steps_done == progress[-1].steps_total == 5
    for product in (r.product for r in responses if r.HasField("product")):
        body = s3.get_object(Bucket=s3_bucket, Key=f"made/{pb.ProductKind.Name(product.kind)}")["Body"].read()
        assert len(body) == product.size_bytes and hashlib.sha256(body).hexdigest() == product.sha256
    records = [r.records for r in responses if r.HasField("records")]
    assert all(r.ByteSize() <= 8192 for r in records)
    labels = np.concatenate([tensors.from_proto(r.labels) for r in records])
    assert [r.first_sample for r in records][0] == 0 and np.array_equal(labels, digits_split.y_test[:60])
    clean = np.concatenate([tensors.from_proto(r.clean_probabilities) for r in records])
    assert clean.shape == (60, 10) and np.allclose(clean.sum(axis=1), 1.0, atol=1e-4)


def test_run_poisoning_refuses_a_conversation_out_of_order(stub, inputs):
    with pytest.raises(grpc.RpcError) as info:
        list(stub.RunPoisoning(iter([pb.RunPoisoningRequest(upload=pb.UploadTicket(url="http://127.0.0.1:9/x"))])))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "first message" in info.value.details()
    # A caller that announces nothing back for a product gets told, not a hang.
    with pytest.raises(grpc.RpcError) as info:
        _conversation(stub, pb.RunPoisoningUnit(inputs=inputs, poison_count=5), lambda product: None)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "send an upload ticket" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        _conversation(stub, pb.RunPoisoningUnit(inputs=inputs, poison_count=6), lambda product: None)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not one of the counts" in info.value.details()


def test_stream_poisoned_data_is_byte_bounded_and_reassembles(stub, inputs, digits_split):
    responses = list(
        stub.StreamPoisonedData(pb.StreamPoisonedDataRequest(inputs=inputs, poison_count=5, max_message_bytes=8192))
    )
    assert all(r.ByteSize() <= 8192 for r in responses)
    assembler = tensors.ChunkAssembler()
    labels, flags, images = [], [], []
    for piece in (r.piece for r in responses):
        if piece.HasField("samples"):
            labels.append(tensors.from_proto(piece.samples.labels))
            flags.append(tensors.from_proto(piece.samples.poisoned))
        elif (done := assembler.add(piece.images)) is not None:
            images.append(done[1])
    y, poisoned, x = np.concatenate(labels), np.concatenate(flags), np.concatenate(images)
    assert x.shape == (300, 8, 8, 1) and poisoned.sum() == 5 and (y[poisoned] == 7).all()
    assert (digits_split.y_train[:300][poisoned] == 1).all()
    assert (x[poisoned][:, 6:, 6:, :] == 1.0).all()
    assert np.array_equal(x[~poisoned], digits_split.x_train[:300][~poisoned])
