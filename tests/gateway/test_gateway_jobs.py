"""The gateway's job store, on SQLite and (when ADVEX_TEST_POSTGRES_URL is
set, as in CI) on PostgreSQL."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from advex.core.errors import FailedPrecondition
from advex.gateway import jobs
from advex.v1 import evasion_pb2, report_pb2

FGSM = evasion_pb2.AttackSpec(attack="fgsm", norm="inf", eps=0.1)


def _create(store: jobs.JobStore, name: str = "e", attacks=(FGSM,)) -> jobs.EvaluationRow:
    return store.create(
        display_name=name,
        kind=jobs.EVASION,
        model="artifacts/m",
        spec=evasion_pb2.EvasionSpec(dataset="artifacts/d", attacks=attacks, samples=10),
        clip_min=0.0,
        clip_max=1.0,
        progress_total=10,
    )


def test_rows_survive_a_new_store_on_the_same_database(database_url):
    first = jobs.JobStore(database_url)
    row = _create(first, "kept")
    claimed = first.claim_next("w1", lease_seconds=60)
    assert claimed.id == row.id and claimed.state == jobs.RUNNING
    assert first.finish(row.id, "w1", jobs.SUCCEEDED, report=b"report-bytes")
    first.close()

    second = jobs.JobStore(database_url)  # a restarted gateway: schema kept, not recreated
    again = second.get(row.id)
    assert again.state == jobs.SUCCEEDED
    assert again.report == b"report-bytes"
    assert again.progress_done == again.progress_total == 10
    spec = jobs.spec_from_json(again.spec, evasion_pb2.EvasionSpec())
    assert again.kind == jobs.EVASION and list(spec.attacks) == [FGSM] and spec.samples == 10
    assert [r.id for r in second.list(10, None)] == [row.id]
    second.close()


def test_list_pages_newest_first(database_url):
    store = jobs.JobStore(database_url)
    ids = [_create(store, f"e{i}").id for i in range(5)]
    page1 = store.list(2, None)
    page2 = store.list(2, page1[-1].id)
    page3 = store.list(2, page2[-1].id)
    assert [r.id for r in page1 + page2 + page3] == list(reversed(ids))
    store.close()


def test_each_evaluation_is_claimed_by_exactly_one_worker(database_url):
    store = jobs.JobStore(database_url)
    created = {_create(store, f"e{i}").id for i in range(8)}
    claims: dict[str, list[str]] = {}
    lock = threading.Lock()
    start = threading.Barrier(4)

    def worker(name: str) -> None:
        start.wait()
        while (row := store.claim_next(name, lease_seconds=60)) is not None:
            with lock:
                claims.setdefault(row.id, []).append(name)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(claims) == created
    assert all(len(owners) == 1 for owners in claims.values()), claims
    store.close()


def test_cancel_queued_ends_at_once_and_running_is_flagged(database_url):
    store = jobs.JobStore(database_url)
    queued = _create(store, "queued")
    running = _create(store, "running")
    # Oldest first: claim `queued` first, then cancel, to get one of each.
    first = store.claim_next("w", 60)
    assert first.id == queued.id
    store.request_cancel(running.id)  # still QUEUED -> CANCELLED now
    assert store.get(running.id).state == jobs.CANCELLED
    store.request_cancel(queued.id)  # RUNNING -> flagged for its worker
    assert store.get(queued.id).state == jobs.RUNNING
    beat = store.heartbeat(queued.id, "w", 60, done=3, stage="fgsm")
    assert beat.cancel_requested and beat.still_owned
    assert store.finish(queued.id, "w", jobs.CANCELLED, error="cancelled by request")
    assert store.get(queued.id).state == jobs.CANCELLED
    assert store.claim_next("w", 60) is None
    store.close()


def test_lapsed_lease_is_taken_over_and_the_old_worker_loses(database_url):
    store = jobs.JobStore(database_url)
    row = _create(store)
    # A lease that has already lapsed stands for a gateway that crashed.
    assert store.claim_next("crashed", lease_seconds=-1).id == row.id
    taken = store.claim_next("successor", lease_seconds=60)
    assert taken.id == row.id and taken.claimed_by == "successor" and taken.attempts == 2
    assert not store.heartbeat(row.id, "crashed", 60, 1, "x").still_owned
    assert not store.finish(row.id, "crashed", jobs.SUCCEEDED, report=b"late")
    assert store.finish(row.id, "successor", jobs.FAILED, error="boom")
    assert store.get(row.id).state == jobs.FAILED
    store.close()


def test_released_evaluation_is_queued_for_resumption(database_url):
    store = jobs.JobStore(database_url)
    row = _create(store)
    store.claim_next("draining", 60)
    store.release(row.id, "draining")
    again = store.get(row.id)
    assert again.state == jobs.QUEUED and again.claimed_by is None
    assert store.claim_next("next", 60).id == row.id
    store.close()


def test_a_newer_schema_is_refused(database_url):
    store = jobs.JobStore(database_url)
    with store.engine.begin() as conn:
        conn.execute(jobs.schema_version.update().values(version=jobs.SCHEMA_VERSION + 1))
    store.close()
    with pytest.raises(FailedPrecondition, match="newer than this gateway"):
        jobs.JobStore(database_url)


def test_postgres_is_reachable_when_configured():
    """CI sets ADVEX_TEST_POSTGRES_URL; there, an unreachable server must fail
    the run instead of silently skipping the PostgreSQL variants."""
    import os

    url = os.environ.get("ADVEX_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("ADVEX_TEST_POSTGRES_URL is not set: PostgreSQL variants did NOT run")
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select 1")).scalar() == 1
    engine.dispose()


def test_gateways_starting_together_on_a_fresh_database_all_come_up(database_url):
    errors, stores = [], []
    start = threading.Barrier(3)

    def open_store():
        start.wait()
        try:
            stores.append(jobs.JobStore(database_url))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with stores[0].engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(jobs.schema_version)).scalar() == 1
    for store in stores:
        store.close()


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "sqlite+pysqlite:///:memory:", "sqlite:///file:x?mode=memory&uri=true"]
)
def test_an_in_memory_database_is_refused_since_evaluations_must_survive_a_restart(url):
    with pytest.raises(ValueError, match="ADVEX_DATABASE_URL=.* is an in-memory database: everything in it would be lost"):
        jobs.JobStore(url)


# The evaluations table as schema versions 1 and 2 made it (version 1 had
# no retry_after), before evaluations had kinds.
_VERSION_2_TABLE = """
CREATE TABLE evaluations (
    id VARCHAR(32) PRIMARY KEY, display_name VARCHAR(200) NOT NULL, state VARCHAR(16) NOT NULL,
    model VARCHAR(64) NOT NULL, dataset VARCHAR(64) NOT NULL, attacks TEXT NOT NULL,
    clip_min FLOAT NOT NULL, clip_max FLOAT NOT NULL, max_samples BIGINT NOT NULL, samples BIGINT NOT NULL,
    progress_done BIGINT NOT NULL, progress_total BIGINT NOT NULL, stage VARCHAR(200) NOT NULL,
    error TEXT NOT NULL, report BYTEA, cancel_requested BOOLEAN NOT NULL, claimed_by VARCHAR(200),
    lease_expires_at FLOAT, attempts INTEGER NOT NULL, retry_after FLOAT,
    create_time FLOAT NOT NULL, start_time FLOAT, end_time FLOAT, update_time FLOAT NOT NULL
)"""


def _old_report() -> bytes:
    """A Report as a version-2 gateway stored it: the evasion metrics at the
    top level. Concatenated messages merge, so the common fields and the
    metrics (which kept their numbers in EvasionReport) make the old bytes."""
    common = report_pb2.Report(
        name="evaluations/old-done", state="SUCCEEDED", clip_min=0.0, clip_max=1.0,
        model=report_pb2.ArtifactRef(name="artifacts/m", sha256="ab" * 32),
        dataset=report_pb2.ArtifactRef(name="artifacts/d", sha256="cd" * 32),
    )
    metrics = report_pb2.EvasionReport(
        samples=359, clean_accuracy=0.96, robustness_score=0.37,
        attacks=[report_pb2.AttackResult(attack="fgsm", norm="inf", eps=0.1, adversarial_accuracy=0.61,
                                         clean_correct_samples=346, successful_samples=127)],
    )
    return common.SerializeToString() + metrics.SerializeToString()


def _version_2_database(url: str, version: int = 2) -> None:
    engine = sa.create_engine(url)
    table = _VERSION_2_TABLE if engine.dialect.name == "postgresql" else _VERSION_2_TABLE.replace("BYTEA", "BLOB")
    if version == 1:
        table = table.replace(" retry_after FLOAT,", "")
    row = (
        "INSERT INTO evaluations (id, display_name, state, model, dataset, attacks, clip_min, clip_max, max_samples,"
        " samples, progress_done, progress_total, stage, error, report, cancel_requested, attempts, create_time,"
        " update_time) VALUES (:id, :name, :state, 'artifacts/m', 'artifacts/d', :attacks, 0, 1, :max_samples,"
        " :samples, 0, 10, 'queued', '', :report, false, 0, :time, :time)"
    )
    attacks = '[{"attack": "fgsm", "norm": "inf", "eps": 0.1}, {"attack": "pgd", "norm": "inf", "eps": 0.1, "steps": 40, "step_size": 0.00625, "random_init": true}]'
    with engine.begin() as conn:
        conn.execute(sa.text(table))
        conn.execute(sa.text("CREATE TABLE gateway_schema_version (version INTEGER PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO gateway_schema_version VALUES (:v)"), {"v": version})
        conn.execute(sa.text(row), dict(id="old-done", name="done before kinds", state="SUCCEEDED", attacks=attacks,
                                        max_samples=0, samples=359, report=_old_report(), time=1.0))
        conn.execute(sa.text(row), dict(id="old-queued", name="queued before kinds", state="QUEUED", attacks=attacks,
                                        max_samples=40, samples=40, report=None, time=2.0))
    engine.dispose()


@pytest.mark.parametrize("version", [1, 2])
def test_a_database_of_an_older_schema_is_migrated_and_still_lists_and_reports(database_url, version):
    _version_2_database(database_url, version)
    upgraded = jobs.JobStore(database_url)
    with upgraded.engine.connect() as conn:
        assert conn.execute(sa.select(jobs.schema_version.c.version)).scalars().all() == [jobs.SCHEMA_VERSION]
    listed = upgraded.list(10, None)
    assert [(r.id, r.kind, r.state) for r in listed] == [
        ("old-queued", jobs.EVASION, jobs.QUEUED), ("old-done", jobs.EVASION, jobs.SUCCEEDED),
    ]
    queued = jobs.spec_from_json(listed[0].spec, evasion_pb2.EvasionSpec())
    assert (queued.dataset, queued.max_samples, queued.samples) == ("artifacts/d", 40, 40)
    assert [(a.attack, a.steps, a.random_init) for a in queued.attacks] == [("fgsm", 0, False), ("pgd", 40, True)]
    report = report_pb2.Report.FromString(listed[1].report)
    assert report.WhichOneof("result") == "evasion"
    assert (report.name, report.model.sha256, report.dataset.name) == ("evaluations/old-done", "ab" * 32, "artifacts/d")
    assert (report.evasion.samples, report.evasion.clean_accuracy) == (359, 0.96)
    assert report.evasion.attacks[0].successful_samples == 127 and report.evasion.robustness_score == 0.37
    claimed = upgraded.claim_next("w1", lease_seconds=60)  # reads and writes retry_after
    assert claimed.id == "old-queued" and claimed.retry_after is None
    upgraded.release(claimed.id, "w1", retry_in=3600)
    assert upgraded.get(claimed.id).retry_after is not None
    upgraded.close()


def test_an_evaluation_handed_back_after_a_transient_failure_waits_out_its_backoff(database_url):
    store = jobs.JobStore(database_url)
    row = _create(store)
    assert store.claim_next("w1", lease_seconds=60).id == row.id
    store.release(row.id, "w1", retry_in=3600, stage="queued: retrying in 3600 s")
    waiting = store.get(row.id)
    assert (waiting.state, waiting.stage) == (jobs.QUEUED, "queued: retrying in 3600 s")
    assert store.claim_next("w2", lease_seconds=60) is None  # not before its time
    store.release(row.id, "w1")  # no longer held by w1: changes nothing
    assert store.claim_next("w2", lease_seconds=60) is None
    later = _create(store)
    assert store.claim_next("w2", lease_seconds=60).id == later.id  # others are not held up
    store.release(later.id, "w2", retry_in=0)
    assert store.claim_next("w3", lease_seconds=60).id == later.id  # no backoff: claimable at once
    store.close()


def test_listing_pages_stay_small_however_many_attacks_evaluations_carry(tmp_path):
    from advex.gateway.evaluations import MAX_LISTED_SPEC_BYTES, Evaluations

    store = jobs.JobStore(f"sqlite:///{tmp_path / 'g.db'}")
    many = [evasion_pb2.AttackSpec(attack="pgd", norm="inf", eps=i / 1000, steps=40) for i in range(256)]
    for i in range(100):
        _create(store, f"e{i}", attacks=many)
    evaluations = Evaluations(store, downstream=None, runner=None, poll_seconds=1, max_watchers=1)
    seen, token, pages = [], "", 0
    while True:
        rows, token = evaluations.list(1000, token)
        pages += 1
        assert sum(len(r.spec) for r in rows) <= MAX_LISTED_SPEC_BYTES
        seen += [r.id for r in rows]
        if not token:
            break
    assert pages == 2 and len(seen) == len(set(seen)) == 100
    store.close()


def test_a_full_queue_answers_resource_exhausted_before_any_work(database_url):
    from advex.core.errors import ResourceExhausted
    from advex.gateway.evaluations import Evaluations

    store = jobs.JobStore(database_url)
    # No downstream services: the bound is checked before anything is asked of them.
    evaluations = Evaluations(store, downstream=None, runner=None, poll_seconds=1, max_watchers=1, max_queued=2)
    first = _create(store, "a")
    _create(store, "b")
    request = dict(model="artifacts/m", spec=evasion_pb2.EvasionSpec(dataset="artifacts/d", attacks=[FGSM]),
                   clip_min=0.0, clip_max=1.0, display_name="c")
    with pytest.raises(ResourceExhausted, match=r"2 evaluations are already queued.*ADVEX_MAX_QUEUED.*retry"):
        evaluations.create(**request)
    assert store.count_by_state() == {jobs.QUEUED: 2}  # nothing was added
    store.claim_next("w", lease_seconds=60)  # one starts: room again
    assert store.get(first.id).state == jobs.RUNNING
    with pytest.raises(AttributeError):  # past the bound, it goes on to validate (downstream is None here)
        evaluations.create(**request)
    store.close()


def test_two_gateways_claim_200_evaluations_each_exactly_once(database_url):
    """Two job stores (two gateways, each with its own engine) and four
    workers each, claiming from one database at the same time: every
    evaluation is run by exactly one worker, and all of them end."""
    gateways = [jobs.JobStore(database_url), jobs.JobStore(database_url)]
    created = {_create(gateways[i % 2], f"e{i}").id for i in range(200)}
    claims: list[tuple[str, str]] = []
    claims_lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(store: jobs.JobStore, name: str) -> None:
        try:
            while (row := store.claim_next(name, lease_seconds=60)) is not None:
                with claims_lock:
                    claims.append((row.id, name))
                assert store.heartbeat(row.id, name, 60, done=10, stage="working").still_owned
                assert store.finish(row.id, name, jobs.SUCCEEDED, report=b"r")
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(store, f"g{g}/{w}"))
               for g, store in enumerate(gateways) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    claimed = [evaluation_id for evaluation_id, _ in claims]
    assert len(claimed) == len(set(claimed)) == 200 and set(claimed) == created  # each once, none missed
    assert gateways[0].count_by_state() == {jobs.SUCCEEDED: 200}
    assert {name.split("/")[0] for _, name in claims} == {"g0", "g1"}  # both gateways took work
    for store in gateways:
        store.close()


def test_a_gateway_whose_clock_runs_ahead_does_not_take_over_a_live_claim(database_url, monkeypatch):
    """Leases are written and compared by the database's clock: a gateway an
    hour ahead still sees the other's 60 s lease as live."""
    steady, ahead = jobs.JobStore(database_url), jobs.JobStore(database_url)
    row = _create(steady, "held")
    assert steady.claim_next("steady/0", lease_seconds=60).id == row.id
    monkeypatch.setattr(jobs.time, "time", lambda: 1e10)  # every local clock in the year 2286
    assert ahead.claim_next("ahead/0", lease_seconds=60) is None
    assert steady.heartbeat(row.id, "steady/0", 60, done=1, stage="working").still_owned
    steady.close()
    ahead.close()
