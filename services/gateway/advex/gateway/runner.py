"""Runs claimed evaluations: attack -> scoring, with progress, cancel and drain.

This module is the gateway's client of the rest of the mesh (it holds the
stubs and calls them); the rules of the public API live in evaluations.py and
the SQL in jobs.py.

One evaluation is: locate the artifacts (presigned GET URLs from storage),
re-check compatibility on the attack service, then for each attack stream
RunEvasion's per-sample records straight into one ScoreEvasion stream, and
store the Report scoring returns. Nothing per-sample is kept here; the
records pass through.

A keeper thread renews the claim's lease and watches for cancel requests
(which may come through any gateway sharing the database) and stops the
in-flight calls at once when one arrives. Every downstream call is tracked,
so cancel and drain interrupt whatever runs, and bounded by a deadline where
its duration is bounded.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import grpc

from advex.core.attack_specs import resolve, spec_from_dict
from advex.core.errors import status_of
from advex.core.serving import open_channel
from advex.gateway import jobs
from advex.gateway.config import GatewayConfig
from advex.v1 import (
    artifact_pb2,
    artifact_pb2_grpc,
    attack_service_pb2,
    attack_service_pb2_grpc,
    report_pb2,
    scoring_service_pb2,
    scoring_service_pb2_grpc,
)

log = logging.getLogger(__name__)

CANCEL, LOST, DRAIN = "cancel", "lost", "drain"

# Storage answers from SQL and S3 metadata; the attack service may download
# and load a large model before it answers CheckCompatibility.
STORAGE_TIMEOUT_S = 30.0
COMPATIBILITY_TIMEOUT_S = 600.0
# Codes after which the same evaluation may well succeed on another try (a
# replica restarting, a network blip): the evaluation is queued again.
TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}


@dataclass
class Downstream:
    """Stubs for the services the gateway drives, over long-lived channels."""

    storage: artifact_pb2_grpc.ArtifactServiceStub
    attack: attack_service_pb2_grpc.AttackServiceStub
    scoring: scoring_service_pb2_grpc.ScoringServiceStub
    channels: list[grpc.Channel]

    @classmethod
    def connect(cls, config: GatewayConfig) -> "Downstream":
        storage, attack, scoring = (
            open_channel(t) for t in (config.storage_target, config.attack_target, config.scoring_target)
        )
        return cls(
            storage=artifact_pb2_grpc.ArtifactServiceStub(storage),
            attack=attack_service_pb2_grpc.AttackServiceStub(attack),
            scoring=scoring_service_pb2_grpc.ScoringServiceStub(scoring),
            channels=[storage, attack, scoring],
        )

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


@dataclass
class _Run:
    """Shared between the evaluation's thread and its keeper."""

    done: int = 0
    stage: str = "starting"
    outcome: str | None = None  # CANCEL, LOST or DRAIN once the run must stop
    finished: threading.Event = field(default_factory=threading.Event)
    _calls: list = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def track(self, call):
        """Registers an in-flight call (or future) so stop() can cancel it."""
        with self._lock:
            self._calls.append(call)
            if self.outcome:
                call.cancel()
        return call

    def stop(self, outcome: str) -> None:
        with self._lock:
            if self.outcome is None:
                self.outcome = outcome
            for call in self._calls:
                call.cancel()


class _Stopped(Exception):
    pass


def locate(
    storage: artifact_pb2_grpc.ArtifactServiceStub, name: str, timeout: float = STORAGE_TIMEOUT_S
) -> attack_service_pb2.ObjectLocation:
    response = storage.GetDownloadUrl(artifact_pb2.GetDownloadUrlRequest(name=name), timeout=timeout)
    return attack_service_pb2.ObjectLocation(url=response.url, sha256=response.sha256, size_bytes=response.size_bytes)


def evaluation_seed(evaluation_id: str) -> int:
    """Stable per evaluation, so a resumed or repeated run draws the same
    random PGD starts."""
    return int.from_bytes(hashlib.sha256(evaluation_id.encode()).digest()[:8], "little")


def failure_message(stage: str, exc: BaseException, attempts: int) -> str:
    """What the user reads in Evaluation.error: what failed and what to do,
    never internal addresses or stack traces."""
    mapped = status_of(exc)
    if mapped is None:
        return f"{stage}: internal error; the gateway log has the details"
    code, details = mapped
    if code in TRANSIENT:
        return (
            f"{stage}: a backend service did not answer ({code.name}) in {attempts} attempt(s); "
            "retry later, or ask the operator to check the attack and scoring services"
        )
    return f"{stage}: {code.name}: {details}"


class EvaluationRunner:
    def __init__(self, store: jobs.JobStore, downstream: Downstream, config: GatewayConfig):
        self.store = store
        self.downstream = downstream
        self.config = config
        self._active: dict[str, _Run] = {}
        self._draining = False
        self._lock = threading.Lock()

    # ---- called from RPC threads ----------------------------------------

    def cancel_local(self, evaluation_id: str) -> None:
        """Stops the evaluation now if this gateway is running it."""
        with self._lock:
            run = self._active.get(evaluation_id)
        if run:
            run.stop(CANCEL)

    def drain(self) -> None:
        """Stops every run, and any run that starts from now on, with DRAIN."""
        with self._lock:
            self._draining = True
            runs = list(self._active.values())
        for run in runs:
            run.stop(DRAIN)

    # ---- called from a worker thread ------------------------------------

    def run(self, row: jobs.EvaluationRow, worker: str) -> None:
        run = _Run()
        with self._lock:
            self._active[row.id] = run
            if self._draining:  # claimed just as draining began
                run.stop(DRAIN)
        keeper = threading.Thread(target=self._keep, args=(row.id, worker, run), daemon=True, name=f"keeper-{row.id}")
        keeper.start()
        try:
            report = self._evaluate(row, run)
        except Exception as exc:  # noqa: BLE001 - every failure becomes the evaluation's state
            self._end_after_error(row, worker, run, exc)
        else:
            if self._record(self.store.finish, row.id, worker, jobs.SUCCEEDED, report=report.SerializeToString()):
                log.info("evaluation %s SUCCEEDED", row.id)
            else:
                log.warning("evaluation %s finished here, but its claim had passed to another gateway", row.id)
        finally:
            run.finished.set()
            keeper.join()
            with self._lock:
                self._active.pop(row.id, None)

    def _end_after_error(self, row: jobs.EvaluationRow, worker: str, run: _Run, exc: Exception) -> None:
        if run.outcome == CANCEL:
            self._record(self.store.finish, row.id, worker, jobs.CANCELLED, error="cancelled by request")
            log.info("evaluation %s CANCELLED", row.id)
            return
        if run.outcome == DRAIN:
            self._record(self.store.release, row.id, worker)
            log.info("evaluation %s handed back for resumption (gateway draining)", row.id)
            return
        if run.outcome == LOST:
            log.warning("evaluation %s: claim lost to another gateway; stopped here", row.id)
            return
        mapped = status_of(exc)
        if mapped is None:
            log.error("evaluation %s failed at %s", row.id, run.stage, exc_info=exc)
        if mapped and mapped[0] in TRANSIENT and row.attempts < self.config.max_attempts:
            backoff = self.config.retry_backoff(row.attempts)
            log.warning(
                "evaluation %s: %s at %s; queued again in %.1f s (attempt %d of %d)",
                row.id, mapped[0].name, run.stage, backoff, row.attempts, self.config.max_attempts,
            )
            stage = f"queued: retrying in {backoff:g} s after {mapped[0].name} at {run.stage}"[:200]
            self._record(self.store.release, row.id, worker, retry_in=backoff, stage=stage)
            return
        message = failure_message(run.stage, exc, row.attempts)
        self._record(self.store.finish, row.id, worker, jobs.FAILED, error=message)
        log.info("evaluation %s FAILED: %s", row.id, message)

    def _record(self, write, *args, **kwargs):
        """Retries a state write through a database hiccup; if the database
        stays away, the lease lapses and another worker runs it again."""
        for delay in (0.5, 1, 2, 4, 8, None):
            try:
                return write(*args, **kwargs)
            except Exception:  # noqa: BLE001
                if delay is None:
                    log.exception("could not record the end of evaluation %s; its lease will lapse", args[0])
                    return False
                log.warning("recording evaluation %s failed; retrying in %s s", args[0], delay, exc_info=True)
                time.sleep(delay)

    def _keep(self, evaluation_id: str, worker: str, run: _Run) -> None:
        interval = min(self.config.poll_seconds, self.config.lease_seconds / 3)
        renewed = time.monotonic()
        while not run.finished.wait(interval):
            try:
                beat = self.store.heartbeat(evaluation_id, worker, self.config.lease_seconds, run.done, run.stage)
            except Exception:  # noqa: BLE001 - a database hiccup must not end the keeper
                log.warning("heartbeat for evaluation %s failed", evaluation_id, exc_info=True)
                if time.monotonic() - renewed > self.config.lease_seconds:
                    run.stop(LOST)  # another gateway may own it by now
                continue
            renewed = time.monotonic()
            if beat.cancel_requested:
                run.stop(CANCEL)
            elif not beat.still_owned:
                run.stop(LOST)

    def _evaluate(self, row: jobs.EvaluationRow, run: _Run) -> report_pb2.Report:
        storage, attack = self.downstream.storage, self.downstream.attack
        run.stage = "locating the model and dataset"
        artifacts = [
            run.track(storage.GetArtifact.future(artifact_pb2.GetArtifactRequest(name=n), timeout=STORAGE_TIMEOUT_S))
            for n in (row.model, row.dataset)
        ]
        model_artifact, dataset_artifact = (f.result().artifact for f in artifacts)
        locations = [
            run.track(storage.GetDownloadUrl.future(artifact_pb2.GetDownloadUrlRequest(name=n), timeout=STORAGE_TIMEOUT_S))
            for n in (row.model, row.dataset)
        ]
        model, dataset = (
            attack_service_pb2.ObjectLocation(url=r.url, sha256=r.sha256, size_bytes=r.size_bytes)
            for r in (f.result() for f in locations)
        )
        run.stage = "loading the model and dataset"
        info = run.track(
            attack.CheckCompatibility.future(
                attack_service_pb2.CheckCompatibilityRequest(
                    model=model, dataset=dataset, clip_min=row.clip_min, clip_max=row.clip_max
                ),
                timeout=COMPATIBILITY_TIMEOUT_S,
            )
        ).result()
        specs = [spec_from_dict(spec) for spec in row.attacks]
        resolved = [resolve(spec) for spec in specs]

        requests: queue.Queue = queue.Queue(maxsize=32)

        def scoring_requests():
            yield scoring_service_pb2.ScoreEvasionRequest(
                header=scoring_service_pb2.ScoreEvasionHeader(
                    attacks=specs, samples=row.samples, num_classes=info.model.num_classes
                )
            )
            while (item := requests.get()) is not None:
                yield item

        scoring = run.track(self.downstream.scoring.ScoreEvasion.future(scoring_requests()))
        try:
            for index, (spec, attack_spec) in enumerate(zip(specs, resolved)):
                run.stage = f"{attack_spec.label} ({index + 1}/{len(specs)})"
                call = run.track(
                    attack.RunEvasion(
                        attack_service_pb2.RunEvasionRequest(
                            model=model,
                            dataset=dataset,
                            attack=spec,
                            clip_min=row.clip_min,
                            clip_max=row.clip_max,
                            start=0,
                            stop=row.samples,
                            seed=evaluation_seed(row.id),
                        )
                    )
                )
                for response in call:
                    if not response.HasField("records"):
                        continue
                    item = scoring_service_pb2.ScoreEvasionRequest(
                        records=scoring_service_pb2.ScoredRecords(attack_index=index, records=response.records)
                    )
                    self._feed(requests, item, scoring, run)
                    rows = response.records.labels.shape[0] if response.records.labels.shape else 0
                    run.done += rows * attack_spec.cost
            self._feed(requests, None, scoring, run)
            run.stage = "scoring"
            report = scoring.result().report
        except BaseException:
            scoring.cancel()
            raise
        finally:
            # Unblocks the request generator if scoring's thread still waits.
            try:
                requests.put_nowait(None)
            except queue.Full:
                pass
        if run.outcome:
            raise _Stopped(run.outcome)
        report.name = f"evaluations/{row.id}"
        report.state = jobs.SUCCEEDED
        report.clip_min, report.clip_max = row.clip_min, row.clip_max
        for ref, artifact in ((report.model, model_artifact), (report.dataset, dataset_artifact)):
            ref.name, ref.sha256, ref.display_name = artifact.name, artifact.sha256, artifact.display_name
        return report

    @staticmethod
    def _feed(requests: queue.Queue, item, scoring, run: _Run) -> None:
        """Queues `item` for scoring without blocking forever if scoring
        ended early (its error then surfaces from scoring.result())."""
        while True:
            if run.outcome:
                raise _Stopped(run.outcome)
            if scoring.done():
                scoring.result()  # raises scoring's error
                raise _Stopped("scoring ended before all records were sent")
            try:
                requests.put(item, timeout=0.5)
                return
            except queue.Full:
                continue


class WorkerPool:
    """Threads that claim QUEUED evaluations and run them."""

    def __init__(self, store: jobs.JobStore, runner: EvaluationRunner, config: GatewayConfig):
        self.store, self.runner, self.config = store, runner, config
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, args=(f"{config.instance_id}/{i}",), daemon=True, name=f"worker-{i}")
            for i in range(config.workers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.runner.drain()
        with self.store.changed:
            self.store.changed.notify_all()
        for thread in self._threads:
            thread.join()

    def _work(self, worker: str) -> None:
        while not self._stop.is_set():
            try:
                row = self.store.claim_next(worker, self.config.lease_seconds)
            except Exception:  # noqa: BLE001 - e.g. database briefly unreachable
                log.exception("claiming work failed; retrying")
                row = None
            if row is None:
                self.store.wait_for_change(self.config.poll_seconds)
                continue
            log.info("worker %s runs evaluation %s (attempt %d)", worker, row.id, row.attempts)
            try:
                self.runner.run(row, worker)
            except Exception:  # noqa: BLE001 - one evaluation must not end the worker
                log.exception("worker %s: evaluation %s ended unexpectedly", worker, row.id)
