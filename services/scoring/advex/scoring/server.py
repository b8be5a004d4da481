"""gRPC adapter of the scoring service: protos in, `metrics` in the middle,
`report` out. Errors are advex.core.errors exceptions; the shared
interceptor turns them into statuses."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from advex.core import attack_specs, tensors
from advex.core.errors import InvalidArgument
from advex.core.serving import Registration, RunningServer, run_service, start_server
from advex.scoring.config import ScoringConfig
from advex.scoring.metrics import EvasionAccumulator, RecordBatch
from advex.scoring.report import to_report
from advex.v1 import evasion_pb2, scoring_service_pb2, scoring_service_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = "advex.v1.ScoringService"
_RECORD_TENSORS = (
    "labels",
    "clean_probabilities",
    "adversarial_probabilities",
    "perturbation_linf",
    "perturbation_l2",
    "perturbation_l0",
)


class ScoringServicer(scoring_service_pb2_grpc.ScoringServiceServicer):
    def __init__(self, config: ScoringConfig) -> None:
        self._config = config

    def ScoreEvasion(
        self, request_iterator: Iterator[scoring_service_pb2.ScoreEvasionRequest], context
    ) -> scoring_service_pb2.ScoreEvasionResponse:
        started = time.monotonic()
        first = next(request_iterator, None)
        if first is None:
            raise InvalidArgument("the stream was empty; send a header (attacks, samples, num_classes) first")
        if first.WhichOneof("item") != "header":
            raise InvalidArgument(
                "the first message of ScoreEvasion must be a header "
                "(attacks, samples, num_classes), before any records"
            )
        header = first.header
        specs = [attack_specs.resolve(spec, where=f"attack {i}") for i, spec in enumerate(header.attacks)]
        accumulator = EvasionAccumulator(
            specs, header.samples, header.num_classes, max_samples=self._config.max_samples,
            max_attacks=self._config.max_attacks,
        )
        batches = 0
        for request in request_iterator:
            kind = request.WhichOneof("item")
            if kind == "header":
                raise InvalidArgument("a second header arrived; send one header, then only records")
            if kind != "records":
                raise InvalidArgument("a message with neither header nor records arrived")
            scored = request.records
            accumulator.add(scored.attack_index, record_batch(scored.attack_index, scored.records))
            batches += 1
        metrics = accumulator.finish()
        log.info(
            "scored %d attack(s) over %d samples from %d batches in %.2f s",
            len(specs),
            metrics.samples,
            batches,
            time.monotonic() - started,
        )
        return scoring_service_pb2.ScoreEvasionResponse(report=to_report(metrics))


def record_batch(attack_index: int, records: evasion_pb2.EvasionRecords) -> RecordBatch:
    """EvasionRecords -> numpy; shapes and ranges are checked by the accumulator."""
    where = f"records of attack {attack_index} from sample {records.first_sample}"
    arrays = {}
    for field in _RECORD_TENSORS:
        if not records.HasField(field):
            raise InvalidArgument(f"{where} lack the '{field}' tensor")
        try:
            arrays[field] = tensors.from_proto(getattr(records, field))
        except InvalidArgument as exc:
            # The codec's message does not say which tensor it was decoding.
            raise InvalidArgument(f"{where}, '{field}': {exc}") from None
    return RecordBatch(first_sample=records.first_sample, **arrays)


def create_server(address: str, config: ScoringConfig) -> tuple[RunningServer, int]:
    servicer = ScoringServicer(config)
    running = start_server(
        address,
        [
            Registration(
                SERVICE_NAME,
                lambda server: scoring_service_pb2_grpc.add_ScoringServiceServicer_to_server(servicer, server),
            )
        ],
    )
    return running, running.port


def main() -> None:
    run_service("scoring", ScoringConfig.from_env, create_server)
