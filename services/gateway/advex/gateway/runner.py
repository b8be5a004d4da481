"""Runs claimed evaluations, whatever their kind, with progress, cancel,
retries and drain.

The lifecycle lives here; what an evaluation of each kind does lives in the
kind's module (evasion.py, poisoning.py, listed in kinds.py), which gets a
`work.Work`. The rules of the public API live in evaluations.py and the SQL
in jobs.py.

A keeper thread renews the claim's lease and watches for cancel requests
(which may come through any gateway sharing the database) and stops the
in-flight calls at once when one arrives. Every downstream call is tracked,
so cancel and drain interrupt whatever runs, and bounded by a deadline where
its duration is bounded.
"""

from __future__ import annotations

import logging
import threading
import time

import grpc

from advex.core.errors import status_of
from advex.gateway import jobs, monitoring, pages
from advex.gateway.config import GatewayConfig
from advex.gateway.kinds import KINDS
from advex.gateway.work import CANCEL, DRAIN, LOST, Downstream, RunState, ShardLedger, Work
from advex.v1 import report_pb2

log = logging.getLogger(__name__)


# Codes after which the same evaluation may well succeed on another try (a
# replica restarting, a network blip): the evaluation is queued again.
TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}


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
        self._active: dict[str, RunState] = {}
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
        run = RunState()
        with self._lock:
            self._active[row.id] = run
            if self._draining:  # claimed just as draining began
                run.stop(DRAIN)
        keeper = threading.Thread(target=self._keep, args=(row.id, worker, run), daemon=True, name=f"keeper-{row.id}")
        keeper.start()
        try:
            report = self._evaluate(row, run, worker)
        except Exception as exc:  # noqa: BLE001 - every failure becomes the evaluation's state
            self._end_after_error(row, worker, run, exc)
        else:
            if self._finish(row, worker, jobs.SUCCEEDED, report=report.SerializeToString()):
                log.info("evaluation %s SUCCEEDED", row.id)
            else:
                log.warning("evaluation %s finished here, but its claim had passed to another gateway", row.id)
        finally:
            run.finished.set()
            keeper.join()
            with self._lock:
                self._active.pop(row.id, None)

    def _end_after_error(self, row: jobs.EvaluationRow, worker: str, run: RunState, exc: Exception) -> None:
        if run.outcome == CANCEL:
            self._finish(row, worker, jobs.CANCELLED, error="cancelled by request")
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
        self._finish(row, worker, jobs.FAILED, error=message)
        log.info("evaluation %s FAILED: %s", row.id, message)

    def _finish(self, row: jobs.EvaluationRow, worker: str, state: str, **values) -> bool:
        """Ends the evaluation (see JobStore.finish) and counts it."""
        finished = self._record(self.store.finish, row.id, worker, state, **values)
        if finished:
            monitoring.EVALUATIONS_FINISHED.labels(row.kind, state).inc()
        return finished

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

    def _keep(self, evaluation_id: str, worker: str, run: RunState) -> None:
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

    def _evaluate(self, row: jobs.EvaluationRow, run: RunState, worker: str) -> report_pb2.Report:
        ledger = ShardLedger(self.store, row.id, worker, self.config.shard_samples)
        work = Work(row, run, self.downstream, ledger)
        kind = KINDS[row.kind]
        report = kind.execute(work, kind.read_spec(row))
        work.check_stopped()
        report.name = f"evaluations/{row.id}"
        report.state = jobs.SUCCEEDED
        report.clip_min, report.clip_max = row.clip_min, row.clip_max
        page = pages.store_page(work, report)
        if page is not None:
            report.html_page.CopyFrom(page)
        work.check_stopped()
        return report


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
