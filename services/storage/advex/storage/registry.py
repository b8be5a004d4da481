"""Artifact records in SQL (SQLite by default, PostgreSQL when shared).

Every state change is a conditional UPDATE on the current state, so of two
concurrent CompleteUpload calls exactly one moves an artifact out of
PENDING_UPLOAD.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from advex.storage.verify import DatasetSummary, ModelSummary, PatternSummary, Summary

# The key each summary is stored under; the reverse picks the class to decode.
_SUMMARY_KEYS: dict[type, str] = {ModelSummary: "model", DatasetSummary: "dataset", PatternSummary: "pattern"}
_SUMMARY_CLASSES = {key: cls for cls, key in _SUMMARY_KEYS.items()}

PENDING_UPLOAD = "PENDING_UPLOAD"
READY = "READY"
REJECTED = "REJECTED"

metadata = sa.MetaData()

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("id", sa.String(20), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("display_name", sa.String(200), nullable=False, default=""),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("object_key", sa.String(256), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("rejection_reason", sa.Text, nullable=False, default=""),
    # {"model": {...}}, {"dataset": {...}} or {"pattern": {...}} once READY; what verification learned.
    sa.Column("summary", sa.Text, nullable=True),
    sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
)
sa.Index("ix_artifacts_kind_id", artifacts.c.kind, artifacts.c.id)


@dataclass(frozen=True)
class ArtifactRecord:
    id: str
    kind: str
    display_name: str
    state: str
    object_key: str
    size_bytes: int
    sha256: str
    rejection_reason: str
    summary: Summary | None
    create_time: datetime
    update_time: datetime


def _encode_summary(summary: Summary | None) -> str | None:
    if summary is None:
        return None
    return json.dumps({_SUMMARY_KEYS[type(summary)]: summary.to_json()})


def _decode_summary(text: str | None) -> Summary | None:
    if not text:
        return None
    ((key, value),) = json.loads(text).items()
    return _SUMMARY_CLASSES[key].from_json(value)


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _record(row) -> ArtifactRecord:
    values = dict(row._mapping)
    values["summary"] = _decode_summary(values["summary"])
    values["create_time"] = _utc(values["create_time"])
    values["update_time"] = _utc(values["update_time"])
    return ArtifactRecord(**values)


def _row(record: ArtifactRecord) -> dict:
    # The table's columns are the record's fields; only the summary changes form.
    values = {f.name: getattr(record, f.name) for f in fields(record)}
    values["summary"] = _encode_summary(record.summary)
    return values


class Registry:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    def insert(self, record: ArtifactRecord) -> None:
        with self.engine.begin() as conn:
            conn.execute(artifacts.insert().values(**_row(record)))

    def get(self, artifact_id: str) -> ArtifactRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(artifacts).where(artifacts.c.id == artifact_id)).first()
        return _record(row) if row else None

    def list(self, limit: int, after_id: str | None = None, kind: str | None = None) -> list[ArtifactRecord]:
        """Newest first, up to `limit` records older than `after_id`."""
        query = sa.select(artifacts).order_by(artifacts.c.id.desc()).limit(limit)
        if after_id is not None:
            query = query.where(artifacts.c.id < after_id)
        if kind is not None:
            query = query.where(artifacts.c.kind == kind)
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(query)]

    def _transition(self, artifact_id: str, from_state: str, **values) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                artifacts.update()
                .where(artifacts.c.id == artifact_id, artifacts.c.state == from_state)
                .values(update_time=datetime.now(UTC), **values)
            )
        return result.rowcount == 1

    def mark_ready(self, artifact_id: str, summary: Summary) -> bool:
        """PENDING_UPLOAD -> READY; False if the artifact was no longer pending."""
        return self._transition(artifact_id, PENDING_UPLOAD, state=READY, summary=_encode_summary(summary))

    def mark_rejected(self, artifact_id: str, reason: str) -> bool:
        """PENDING_UPLOAD -> REJECTED; False if the artifact was no longer pending."""
        return self._transition(artifact_id, PENDING_UPLOAD, state=REJECTED, rejection_reason=reason)

    def delete(self, artifact_id: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(artifacts.delete().where(artifacts.c.id == artifact_id)).rowcount == 1

