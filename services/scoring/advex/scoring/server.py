"""gRPC adapter of the scoring service: protos in, `metrics` / `poisoning` in
the middle, `report` out. Errors are advex.core.errors exceptions; the shared
interceptor turns them into statuses."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import numpy as np

from advex.core import attack_specs, tensors
from advex.core.errors import InvalidArgument
from advex.core.serving import Registration, RunningServer, run_service, start_server
from advex.internal.v1 import records_pb2, scoring_service_pb2, scoring_service_pb2_grpc
from advex.scoring import html_report
from advex.scoring.config import ScoringConfig
from advex.scoring.metrics import EvasionAccumulator, Examples, RecordBatch
from advex.scoring.poisoning import PoisoningAccumulator, PoisoningBatch
from advex.scoring.report import evasion_figures, evasion_report, poisoning_report

log = logging.getLogger(__name__)

# The page travels in pieces of at most this many bytes.
PAGE_PIECE_BYTES = 512 * 1024

SERVICE_NAME = scoring_service_pb2.DESCRIPTOR.services_by_name["ScoringService"].full_name
_EVASION_TENSORS = (
    "labels",
    "clean_probabilities",
    "adversarial_probabilities",
    "perturbation_linf",
    "perturbation_l2",
    "perturbation_l0",
)
_POISONING_TENSORS = ("labels", "clean_probabilities", "triggered_probabilities")
_EVASION_HEADER = "attacks, samples, num_classes"
_POISONING_HEADER = "num_classes, samples, source_classes, target_class, poison_counts, poison_fractions"


class ScoringServicer(scoring_service_pb2_grpc.ScoringServiceServicer):
    def __init__(self, config: ScoringConfig) -> None:
        self._config = config

    def ScoreEvasion(
        self, request_iterator: Iterator[scoring_service_pb2.ScoreEvasionRequest], context
    ) -> scoring_service_pb2.ScoreEvasionResponse:
        started = time.monotonic()
        header = read_header(request_iterator, "ScoreEvasion", _EVASION_HEADER)
        specs = [attack_specs.resolve(spec, where=f"attack {i}") for i, spec in enumerate(header.attacks)]
        # A header without a clip range (0, 0) skips the check that needs it.
        clip_range = (header.clip_min, header.clip_max) if header.clip_max > header.clip_min else None
        accumulator = EvasionAccumulator(
            specs, header.samples, header.num_classes, max_samples=self._config.max_samples,
            max_attacks=self._config.max_attacks, clip_range=clip_range,
        )
        batches = 0
        for kind, scored in read_items(request_iterator, ("records", "examples")):
            if kind == "examples":
                accumulator.add_examples(scored.attack_index, examples(scored.attack_index, scored.examples))
                continue
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
        report = evasion_report(metrics)
        response = scoring_service_pb2.ScoreEvasionResponse(report=report, figures=evasion_figures(metrics, report))
        outcomes = accumulator.outcomes()
        if outcomes is not None:
            clean, adversarial = outcomes
            response.outcomes.CopyFrom(scoring_service_pb2.EvasionOutcomes(
                samples=metrics.samples, clean_correct=np.packbits(clean).tobytes(),
                adversarial_correct=[np.packbits(row).tobytes() for row in adversarial],
            ))
        return response

    def RenderReport(self, request: scoring_service_pb2.RenderReportRequest, context):
        started = time.monotonic()
        page = html_report.render(
            request.report,
            request.evasion_figures if request.HasField("evasion_figures") else None,
            list(request.class_names),
            dict(request.versions),
            poisoning_examples=(request.poisoning_examples_count, request.poisoning_examples)
            if request.HasField("poisoning_examples") else None,
        )
        log.info("rendered the page of %s: %d bytes in %.2f s", request.report.name or "a report", len(page),
                 time.monotonic() - started)
        for at in range(0, len(page), PAGE_PIECE_BYTES):
            yield scoring_service_pb2.RenderReportResponse(html=page[at : at + PAGE_PIECE_BYTES])

    def ScorePoisoning(
        self, request_iterator: Iterator[scoring_service_pb2.ScorePoisoningRequest], context
    ) -> scoring_service_pb2.ScorePoisoningResponse:
        started = time.monotonic()
        header = read_header(request_iterator, "ScorePoisoning", _POISONING_HEADER)
        accumulator = PoisoningAccumulator(
            num_classes=header.num_classes,
            samples=header.samples,
            source_classes=list(header.source_classes),
            target_class=header.target_class,
            poison_counts=list(header.poison_counts),
            poison_fractions=list(header.poison_fractions),
            max_samples=self._config.max_samples,
            max_models=self._config.max_models,
        )
        batches = 0
        for _, scored in read_items(request_iterator, ("records",)):
            accumulator.add(scored.model_index, poisoning_batch(scored.model_index, scored.records))
            batches += 1
        metrics = accumulator.finish()
        log.info(
            "scored %d model(s) over %d test samples from %d batches in %.2f s",
            len(header.poison_counts),
            metrics.test_samples,
            batches,
            time.monotonic() - started,
        )
        return scoring_service_pb2.ScorePoisoningResponse(report=poisoning_report(metrics))


def read_header(request_iterator: Iterator, rpc: str, fields: str):
    """The header the stream must start with; InvalidArgument otherwise."""
    first = next(request_iterator, None)
    if first is None:
        raise InvalidArgument(f"the stream was empty; send a header ({fields}) first")
    if first.WhichOneof("item") != "header":
        raise InvalidArgument(f"the first message of {rpc} must be a header ({fields}), before any records")
    return first.header


def read_items(request_iterator: Iterator, kinds: tuple[str, ...]) -> Iterator[tuple[str, object]]:
    """(kind, item) of every message after the header, of one of `kinds`."""
    allowed = " or ".join(kinds)
    for request in request_iterator:
        kind = request.WhichOneof("item")
        if kind == "header":
            raise InvalidArgument(f"a second header arrived; send one header, then only {allowed}")
        if kind not in kinds:
            raise InvalidArgument(f"a message with neither header nor {allowed} arrived")
        yield kind, getattr(request, kind)


def decode_tensors(records, fields: tuple[str, ...], where: str) -> dict[str, np.ndarray]:
    """The named tensors of a records message as numpy arrays; shapes and
    ranges are the accumulator's to check."""
    arrays = {}
    for field in fields:
        if not records.HasField(field):
            raise InvalidArgument(f"{where} lack the '{field}' tensor")
        try:
            arrays[field] = tensors.from_proto(getattr(records, field))
        except InvalidArgument as exc:
            # The codec's message does not say which tensor it was decoding.
            raise InvalidArgument(f"{where}, '{field}': {exc}") from None
    return arrays


def record_batch(attack_index: int, records: records_pb2.EvasionRecords) -> RecordBatch:
    where = f"records of attack {attack_index} from sample {records.first_sample}"
    arrays = decode_tensors(records, _EVASION_TENSORS, where)
    if records.HasField("targets"):
        arrays.update(decode_tensors(records, ("targets",), where))
    return RecordBatch(first_sample=records.first_sample, **arrays)


def examples(attack_index: int, message: records_pb2.EvasionExamples) -> Examples:
    where = f"examples of attack {attack_index}"
    arrays = decode_tensors(message, ("clean", "adversarial"), where)
    return Examples(
        samples=np.asarray(message.samples, dtype=np.int64), **arrays,
        labels=np.asarray(message.labels, dtype=np.int64),
        clean_predictions=np.asarray(message.clean_predictions, dtype=np.int64),
        adversarial_predictions=np.asarray(message.adversarial_predictions, dtype=np.int64),
    )


def poisoning_batch(model_index: int, records: records_pb2.PoisoningRecords) -> PoisoningBatch:
    where = f"records of model {model_index} from sample {records.first_sample}"
    return PoisoningBatch(first_sample=records.first_sample, **decode_tensors(records, _POISONING_TENSORS, where))


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
