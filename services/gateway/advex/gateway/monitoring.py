"""What the gateway counts for Prometheus (served by advex.core.metrics).

Evaluations by state are read from SQL at scrape time, so every gateway
sharing a database reports the same, whole-system figures (a sum over
gateways would count each evaluation once per gateway: use max() or one
gateway's series). Evaluations finished are counted by the gateway that ran
them (sum over gateways).
"""

from __future__ import annotations

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily

from advex.gateway import jobs

EVALUATIONS_FINISHED = Counter(
    "advex_evaluations_finished_total",
    "Evaluations this gateway ran to an end, by kind (evasion, poisoning) and final state.",
    ("kind", "state"),
)


class EvaluationStates:
    """advex_evaluations{state} and advex_evaluation_queue_depth, from the job table."""

    def __init__(self, store: jobs.JobStore) -> None:
        self.store = store

    def describe(self):
        # Described without a query, so registering it touches no database.
        return [
            GaugeMetricFamily("advex_evaluations", "Evaluations in the database, by state.", labels=("state",)),
            GaugeMetricFamily("advex_evaluation_queue_depth", "Evaluations QUEUED, waiting for a gateway worker."),
        ]

    def collect(self):
        counts = self.store.count_by_state()
        by_state = GaugeMetricFamily("advex_evaluations", "Evaluations in the database, by state.", labels=("state",))
        for state in (jobs.QUEUED, jobs.RUNNING, *sorted(jobs.TERMINAL)):
            by_state.add_metric((state,), counts.get(state, 0))
        yield by_state
        yield GaugeMetricFamily(
            "advex_evaluation_queue_depth",
            "Evaluations QUEUED, waiting for a gateway worker.",
            value=counts.get(jobs.QUEUED, 0),
        )
