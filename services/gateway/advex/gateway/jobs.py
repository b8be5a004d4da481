"""Evaluations as jobs in SQL: the gateway's only state.

Everything a client can ask about an evaluation (state, progress, error,
report) is a row here, so `get`, `list` and `watch` answer the same after a
restart, and several gateways can share one PostgreSQL database. Work is
claimed with conditional UPDATEs and held by a lease that the running worker
renews; a lapsed lease (crashed gateway) puts the evaluation back in reach.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from google.protobuf import json_format
from google.protobuf.message import Message

from advex.core.errors import FailedPrecondition
from advex.core.resources import new_id
from advex.core.sql import create_engine
from advex.v1 import evasion_pb2, report_pb2

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
EVASION = "evasion"

metadata = sa.MetaData()

evaluations = sa.Table(
    "evaluations",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("display_name", sa.String(200), nullable=False, default=""),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    # What the evaluation does: a name of advex.gateway.kinds.KINDS.
    sa.Column("kind", sa.String(16), nullable=False, default=EVASION),
    sa.Column("model", sa.String(64), nullable=False),
    # The kind's spec (EvasionSpec, PoisoningSpec) as proto3 JSON, fully
    # resolved (every default filled in).
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("clip_min", sa.Float, nullable=False),
    sa.Column("clip_max", sa.Float, nullable=False),
    sa.Column("progress_done", sa.BigInteger, nullable=False, default=0),
    sa.Column("progress_total", sa.BigInteger, nullable=False, default=0),
    sa.Column("stage", sa.String(200), nullable=False, default=""),
    sa.Column("error", sa.Text, nullable=False, default=""),
    # Serialized advex.v1.Report of a SUCCEEDED evaluation.
    sa.Column("report", sa.LargeBinary, nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("claimed_by", sa.String(200), nullable=True),
    sa.Column("lease_expires_at", sa.Float, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    # A QUEUED evaluation handed back after a transient failure is not
    # claimed again before this time, so a restarting service gets a chance.
    sa.Column("retry_after", sa.Float, nullable=True),
    # Seconds since the epoch: portable across SQLite and PostgreSQL.
    sa.Column("create_time", sa.Float, nullable=False),
    sa.Column("start_time", sa.Float, nullable=True),
    sa.Column("end_time", sa.Float, nullable=True),
    sa.Column("update_time", sa.Float, nullable=False),
)

# An evaluation's work in pieces (an evasion attack on a range of samples),
# planned when it first runs. A DONE shard's results are stored as a SHARD
# artifact, so a run that was interrupted resumes from the shards it
# finished; the report is made from all of them, in order, at the end.
shards = sa.Table(
    "shards",
    metadata,
    sa.Column("evaluation_id", sa.String(32), primary_key=True),
    sa.Column("shard_index", sa.Integer, primary_key=True),
    sa.Column("attack_index", sa.Integer, nullable=False),
    sa.Column("first_sample", sa.BigInteger, nullable=False),
    sa.Column("stop_sample", sa.BigInteger, nullable=False),
    # PENDING until its results are stored, then DONE.
    sa.Column("state", sa.String(16), nullable=False),
    # The SHARD artifact holding the results, with what storage verified.
    sa.Column("artifact", sa.String(64), nullable=True),
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("size_bytes", sa.BigInteger, nullable=True),
    # The attack engine's software versions, as JSON (for the report's footer).
    sa.Column("versions", sa.Text, nullable=True),
    sa.Column("update_time", sa.Float, nullable=False),
)
PENDING, DONE = "PENDING", "DONE"

schema_version = sa.Table(
    "gateway_schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
)



def _evasion_specs_and_reports(conn: sa.Connection) -> None:
    """Version 3: an evaluation of version 2 was an evasion one, its dataset,
    attacks and sample counts columns of their own, its report the evasion
    metrics at the top of Report. Both move into the shapes of today (the
    EvasionSpec JSON; Report.evasion, whose field numbers are the old ones, so
    the old bytes parse as an EvasionReport)."""
    rows = conn.execute(sa.text("SELECT id, dataset, attacks, max_samples, samples, report FROM evaluations"))
    for id_, dataset, attacks, max_samples, samples, report in rows.fetchall():
        spec = evasion_pb2.EvasionSpec(dataset=dataset, max_samples=max_samples, samples=samples)
        for attack in json.loads(attacks):
            json_format.ParseDict(attack, spec.attacks.add())
        values = {"id": id_, "spec": spec_json(spec), "report": upgrade_report(report) if report else None}
        conn.execute(sa.text("UPDATE evaluations SET spec = :spec, report = :report WHERE id = :id"), values)


def upgrade_report(old: bytes) -> bytes:
    """A Report serialized before reports had kinds, as a Report of today."""
    report = report_pb2.Report.FromString(old)
    evasion = report_pb2.EvasionReport.FromString(old)
    # Each message kept the other's fields as unknown ones.
    report.DiscardUnknownFields()
    evasion.DiscardUnknownFields()
    report.evasion.CopyFrom(evasion)
    return report.SerializeToString()


# An empty database gets the tables above as they are now (create_all) and
# the latest version. An older one is brought up to date by these entries:
# entry i migrates version i+1 to i+2: SQL statements (portable: SQLite,
# PostgreSQL) and functions of the connection, run in order in one
# transaction.
MIGRATIONS: list[Sequence[str | Callable[[sa.Connection], None]]] = [
    # 2: backoff before retrying after a transient failure.
    ["ALTER TABLE evaluations ADD COLUMN retry_after FLOAT"],
    # 3: evaluations have kinds (evasion, poisoning) and a spec per kind.
    [
        f"ALTER TABLE evaluations ADD COLUMN kind VARCHAR(16) NOT NULL DEFAULT '{EVASION}'",
        "ALTER TABLE evaluations ADD COLUMN spec TEXT NOT NULL DEFAULT '{}'",
        _evasion_specs_and_reports,
        "ALTER TABLE evaluations DROP COLUMN dataset",
        "ALTER TABLE evaluations DROP COLUMN attacks",
        "ALTER TABLE evaluations DROP COLUMN max_samples",
        "ALTER TABLE evaluations DROP COLUMN samples",
    ],
    # 4: the shards table (made by create_all, which runs first).
    [],
]
_MIGRATION_LOCK_KEY = 0x61647665  # "adve": any constant shared by all gateways
SCHEMA_VERSION = 1 + len(MIGRATIONS)


@dataclass
class EvaluationRow:
    id: str
    display_name: str
    state: str
    kind: str
    model: str
    # The kind's spec as stored: proto3 JSON (see spec_json); kinds.py reads it.
    spec: str
    clip_min: float
    clip_max: float
    progress_done: int
    progress_total: int
    stage: str
    error: str
    report: bytes | None
    cancel_requested: bool
    claimed_by: str | None
    lease_expires_at: float | None
    attempts: int
    retry_after: float | None
    create_time: float
    start_time: float | None
    end_time: float | None
    update_time: float

    @classmethod
    def from_mapping(cls, row) -> "EvaluationRow":
        values = dict(row)
        values["cancel_requested"] = bool(values["cancel_requested"])
        return cls(**values)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


@dataclass
class Heartbeat:
    """What a worker learns when it reports progress."""

    still_owned: bool
    cancel_requested: bool


@dataclass
class JobStore:
    """The evaluations table, plus an in-process signal for every change."""

    database_url: str
    engine: sa.Engine = field(init=False)
    changed: threading.Condition = field(default_factory=threading.Condition, init=False)

    def __post_init__(self) -> None:
        self.engine = create_engine(self.database_url, "ADVEX_DATABASE_URL")
        self._migrate()

    def _migrate(self) -> None:
        # PostgreSQL serializes starting gateways with an advisory lock;
        # SQLite has none, so a gateway that lost the race to create the
        # tables tries again and then finds them.
        for attempt in range(5):
            try:
                return self._migrate_once()
            except (sa.exc.OperationalError, sa.exc.IntegrityError, sa.exc.ProgrammingError):
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _migrate_once(self) -> None:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Gateways starting together would race on CREATE TABLE and
                # on applying migrations; the lock ends with the transaction.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            metadata.create_all(conn)
            current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
            if current is None:
                conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
                return
            if current > SCHEMA_VERSION:
                raise FailedPrecondition(
                    f"the database schema is version {current}, newer than this gateway's "
                    f"{SCHEMA_VERSION}; upgrade the gateway"
                )
            for version in range(current, SCHEMA_VERSION):
                for step in MIGRATIONS[version - 1]:
                    if callable(step):
                        step(conn)
                    else:
                        conn.execute(sa.text(step))
            if current < SCHEMA_VERSION:
                conn.execute(schema_version.delete())
                conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))

    def close(self) -> None:
        self.engine.dispose()

    def _clock(self, conn: sa.Connection) -> float:
        """Seconds since the epoch by the database's clock. Leases and
        retry times are written and compared by it, so gateways whose
        clocks disagree still agree on when a claim has lapsed."""
        query = _DATABASE_CLOCK.get(conn.dialect.name)
        return time.time() if query is None else float(conn.execute(query).scalar())

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def wait_for_change(self, timeout: float) -> None:
        """Returns on the next local change, or after `timeout` s (changes
        made by other gateways are only seen by reading SQL again)."""
        with self.changed:
            self.changed.wait(timeout)

    # ---- creating and reading -------------------------------------------

    def create(
        self,
        *,
        display_name: str,
        kind: str,
        model: str,
        spec: Message,
        clip_min: float,
        clip_max: float,
        progress_total: int,
    ) -> EvaluationRow:
        values = dict(
            id=new_id(),
            display_name=display_name,
            state=QUEUED,
            kind=kind,
            model=model,
            spec=spec_json(spec),
            clip_min=clip_min,
            clip_max=clip_max,
            progress_done=0,
            progress_total=progress_total,
            stage="queued",
            error="",
            report=None,
            cancel_requested=False,
            claimed_by=None,
            lease_expires_at=None,
            attempts=0,
            retry_after=None,
            start_time=None,
            end_time=None,
        )
        with self.engine.begin() as conn:
            now = self._clock(conn)
            conn.execute(evaluations.insert().values(**values, create_time=now, update_time=now))
        # Read before waking the workers: the caller is promised the row as
        # created (QUEUED), not as a worker that claimed it already left it.
        row = self.get(values["id"])
        self._notify()
        return row

    def get(self, evaluation_id: str) -> EvaluationRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(evaluations).where(evaluations.c.id == evaluation_id)).mappings().first()
        return EvaluationRow.from_mapping(row) if row else None

    def count_by_state(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(evaluations.c.state, sa.func.count()).group_by(evaluations.c.state))
            return {state: count for state, count in rows}

    def list(self, limit: int, after_id: str | None) -> list[EvaluationRow]:
        """Newest first; `after_id` is where the previous page ended."""
        query = sa.select(evaluations).order_by(evaluations.c.id.desc()).limit(limit)
        if after_id is not None:
            query = query.where(evaluations.c.id < after_id)
        with self.engine.connect() as conn:
            return [EvaluationRow.from_mapping(r) for r in conn.execute(query).mappings()]

    # ---- the worker's side ----------------------------------------------

    def _claimable(self, now: float):
        return sa.or_(
            sa.and_(
                evaluations.c.state == QUEUED,
                sa.or_(evaluations.c.retry_after.is_(None), evaluations.c.retry_after <= now),
            ),
            sa.and_(evaluations.c.state == RUNNING, evaluations.c.lease_expires_at < now),
        )

    def claim_next(self, worker: str, lease_seconds: float) -> EvaluationRow | None:
        """Takes the oldest QUEUED (or abandoned RUNNING) evaluation for
        `worker`. The conditional UPDATE makes exactly one claimant win; on
        PostgreSQL, FOR UPDATE SKIP LOCKED also lets gateways claiming at the
        same moment each take a different row instead of racing for one."""
        for _ in range(5):
            with self.engine.begin() as conn:
                now = self._clock(conn)
                candidate = conn.execute(
                    sa.select(evaluations.c.id)
                    .where(self._claimable(now))
                    .order_by(evaluations.c.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                ).scalar()
                if candidate is None:
                    return None
                won = conn.execute(
                    evaluations.update()
                    .where(evaluations.c.id == candidate, self._claimable(now))
                    .values(
                        state=RUNNING,
                        claimed_by=worker,
                        lease_expires_at=now + lease_seconds,
                        start_time=sa.func.coalesce(evaluations.c.start_time, now),
                        attempts=evaluations.c.attempts + 1,
                        retry_after=None,
                        progress_done=0,
                        stage="starting",
                        update_time=now,
                    )
                ).rowcount
            if won == 1:
                self._notify()
                return self.get(candidate)
        return None

    def heartbeat(
        self, evaluation_id: str, worker: str, lease_seconds: float, done: int, stage: str
    ) -> Heartbeat:
        with self.engine.begin() as conn:
            now = self._clock(conn)
            updated = conn.execute(
                evaluations.update()
                .where(_held_by(evaluation_id, worker))
                .values(progress_done=done, stage=stage, lease_expires_at=now + lease_seconds, update_time=now)
            ).rowcount
            cancel = conn.execute(
                sa.select(evaluations.c.cancel_requested).where(evaluations.c.id == evaluation_id)
            ).scalar()
        self._notify()
        return Heartbeat(still_owned=updated == 1, cancel_requested=bool(cancel))

    def finish(
        self, evaluation_id: str, worker: str, state: str, *, report: bytes | None = None, error: str = ""
    ) -> bool:
        """Ends a claimed evaluation; False if the claim was lost meanwhile."""
        assert state in TERMINAL
        values = dict(state=state, error=error, claimed_by=None, lease_expires_at=None)
        if report is not None:
            values["report"] = report
            values["stage"] = "done"
            values["progress_done"] = evaluations.c.progress_total
        else:
            values["stage"] = state.lower()
        with self.engine.begin() as conn:
            now = self._clock(conn)
            updated = conn.execute(
                evaluations.update()
                .where(_held_by(evaluation_id, worker))
                .values(**values, end_time=now, update_time=now)
            ).rowcount
        self._notify()
        return updated == 1

    def release(self, evaluation_id: str, worker: str, retry_in: float = 0.0, stage: str = "queued (resumes)") -> None:
        """Hands a running evaluation back: QUEUED again, so another worker
        or gateway runs it, no sooner than `retry_in` s from now."""
        with self.engine.begin() as conn:
            now = self._clock(conn)
            conn.execute(
                evaluations.update()
                .where(_held_by(evaluation_id, worker))
                .values(
                    state=QUEUED,
                    claimed_by=None,
                    lease_expires_at=None,
                    retry_after=now + retry_in if retry_in > 0 else None,
                    stage=stage,
                    update_time=now,
                )
            )
        self._notify()

    # ---- shards -----------------------------------------------------------

    def plan_shards(self, evaluation_id: str, worker: str, plan: Sequence[tuple[int, int, int]]) -> list[ShardRow]:
        """The evaluation's shards: as planned by an earlier run if there
        was one (its DONE shards stand), else `plan` ((attack_index, first,
        stop) in order), written while `worker` holds the evaluation."""
        with self.engine.begin() as conn:
            held = conn.execute(sa.select(evaluations.c.id).where(_held_by(evaluation_id, worker))).scalar()
            if held is None:
                raise FailedPrecondition(f"evaluation {evaluation_id} is no longer held by {worker}")
            exists = conn.execute(
                sa.select(sa.func.count()).select_from(shards).where(shards.c.evaluation_id == evaluation_id)
            ).scalar()
            if not exists:
                now = self._clock(conn)
                conn.execute(shards.insert(), [
                    dict(evaluation_id=evaluation_id, shard_index=i, attack_index=a, first_sample=first,
                         stop_sample=stop, state=PENDING, update_time=now)
                    for i, (a, first, stop) in enumerate(plan)
                ])
        return self.shards(evaluation_id)

    def shards(self, evaluation_id: str) -> list[ShardRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(shards).where(shards.c.evaluation_id == evaluation_id).order_by(shards.c.shard_index)
            ).mappings()
            return [ShardRow.from_mapping(r) for r in rows]

    def finish_shard(
        self, evaluation_id: str, shard_index: int, worker: str, *, artifact: str, sha256: str, size_bytes: int,
        versions: str,
    ) -> bool:
        """Records a shard's stored results; False (nothing written) when
        `worker` no longer holds the evaluation, whose new holder redoes it."""
        with self.engine.begin() as conn:
            held = conn.execute(sa.select(evaluations.c.id).where(_held_by(evaluation_id, worker))).scalar()
            if held is None:
                return False
            conn.execute(
                shards.update()
                .where(shards.c.evaluation_id == evaluation_id, shards.c.shard_index == shard_index)
                .values(state=DONE, artifact=artifact, sha256=sha256, size_bytes=size_bytes, versions=versions,
                        update_time=self._clock(conn))
            )
        return True

    def drop_shards(self, evaluation_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(shards.delete().where(shards.c.evaluation_id == evaluation_id))

    # ---- cancelling -----------------------------------------------------

    def request_cancel(self, evaluation_id: str) -> None:
        """QUEUED ends CANCELLED at once; RUNNING is flagged for its worker,
        which stops the attack and records CANCELLED."""
        with self.engine.begin() as conn:
            now = self._clock(conn)
            conn.execute(
                evaluations.update()
                .where(evaluations.c.id == evaluation_id, evaluations.c.state == QUEUED)
                .values(state=CANCELLED, cancel_requested=True, end_time=now, update_time=now, stage="cancelled")
            )
            conn.execute(
                evaluations.update()
                .where(evaluations.c.id == evaluation_id, evaluations.c.state == RUNNING)
                .values(cancel_requested=True, update_time=now, stage="cancelling")
            )
        self._notify()


@dataclass(frozen=True)
class ShardRow:
    evaluation_id: str
    shard_index: int
    attack_index: int
    first_sample: int
    stop_sample: int
    state: str
    artifact: str | None
    sha256: str | None
    size_bytes: int | None
    versions: str | None

    @classmethod
    def from_mapping(cls, row) -> "ShardRow":
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


def spec_json(spec: Message) -> str:
    """How a spec is stored: proto3 JSON with the proto's field names."""
    return json.dumps(json_format.MessageToDict(spec, preserving_proto_field_name=True), sort_keys=True)


def spec_from_json(text: str, message: Message) -> Message:
    """Fills `message` (an empty spec of the right type) from spec_json's text."""
    return json_format.ParseDict(json.loads(text), message)


_DATABASE_CLOCK = {
    "postgresql": sa.text("SELECT EXTRACT(EPOCH FROM clock_timestamp())"),
    "sqlite": sa.text("SELECT (julianday('now') - 2440587.5) * 86400.0"),
}


def _held_by(evaluation_id: str, worker: str):
    """The row is still RUNNING under `worker`'s claim: only then may that
    worker write to it, so a worker whose lease lapsed cannot clobber the
    gateway that took over."""
    return sa.and_(
        evaluations.c.id == evaluation_id,
        evaluations.c.claimed_by == worker,
        evaluations.c.state == RUNNING,
    )
