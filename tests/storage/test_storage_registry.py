"""The artifact registry on SQLite, and on PostgreSQL when it is configured."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from advex.core.resources import new_id
from advex.core.sql import create_engine
from advex.storage.registry import PENDING_UPLOAD, READY, REJECTED, ArtifactRecord, Registry
from advex.storage.verify import DatasetSummary, ModelSummary, PatternSummary


def record(kind: str = "model", **changes) -> ArtifactRecord:
    now = datetime.now(UTC)
    artifact_id = new_id()
    base = ArtifactRecord(
        id=artifact_id,
        kind=kind,
        display_name="näme ✓",
        state=PENDING_UPLOAD,
        object_key=f"{kind}s/{artifact_id}",
        size_bytes=3 * 1024**3,
        sha256="ab" * 32,
        rejection_reason="",
        summary=None,
        create_time=now,
        update_time=now,
    )
    return replace(base, **changes)


def test_records_round_trip_page_and_change_state_once(database_url):
    engine = create_engine(database_url, "TEST_DATABASE_URL")
    try:
        registry = Registry(engine)
        Registry(engine)  # creating the schema again is harmless
        base = datetime.now(UTC)
        records = [
            record(kind, id=f"{i:012x}{'0' * 8}", create_time=base + timedelta(seconds=i), update_time=base)
            for i, kind in enumerate(["model", "dataset", "model", "dataset", "model"])
        ]
        for r in records:
            registry.insert(r)

        stored = registry.get(records[0].id)
        assert stored == records[0]
        assert stored.create_time.tzinfo is not None and stored.size_bytes > 2**31
        assert registry.get("f" * 20) is None

        newest_first = [r.id for r in reversed(records)]
        assert [r.id for r in registry.list(10)] == newest_first
        assert [r.id for r in registry.list(2, after_id=newest_first[1])] == newest_first[2:4]
        assert [r.id for r in registry.list(10, kind="dataset")] == [records[3].id, records[1].id]

        # Of many concurrent attempts to finish the same upload, exactly one wins.
        summary = DatasetSummary(3, (8, 8, 1), "float32", 0, 9, ("a", "b"))
        with ThreadPoolExecutor(8) as pool:
            wins = list(pool.map(lambda _: registry.mark_ready(records[1].id, summary), range(8)))
        assert wins.count(True) == 1
        assert registry.mark_rejected(records[1].id, "late") is False
        ready = registry.get(records[1].id)
        assert (ready.state, ready.summary, ready.rejection_reason) == (READY, summary, "")
        assert ready.update_time >= ready.create_time - timedelta(seconds=10)

        assert registry.mark_rejected(records[0].id, "bad bytes") is True
        assert registry.mark_ready(records[0].id, ModelSummary("3.0", "Sequential", 1)) is False
        rejected = registry.get(records[0].id)
        assert (rejected.state, rejected.rejection_reason, rejected.summary) == (REJECTED, "bad bytes", None)

        assert registry.delete(records[0].id) is True
        assert registry.delete(records[0].id) is False
        assert registry.get(records[0].id) is None
    finally:
        engine.dispose()


def test_sqlite_file_folder_is_created(tmp_path):
    path = tmp_path / "deep" / "er" / "storage.db"
    engine = create_engine(f"sqlite:///{path}", "TEST_DATABASE_URL")
    try:
        Registry(engine).insert(record())
        assert path.exists()
    finally:
        engine.dispose()


def test_every_kind_of_summary_round_trips(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'storage.db'}", "TEST_DATABASE_URL")
    try:
        registry = Registry(engine)
        summaries = {
            "model": ModelSummary("3.15.1", "Sequential", 6),
            "dataset": DatasetSummary(3, (8, 8, 1), "float32", 0, 9, ("a", "b")),
            "pattern": PatternSummary((4, 4, 3), (4, 4), -0.5, 255.0),
        }
        for kind, summary in summaries.items():
            pending = record(kind)
            registry.insert(pending)
            assert registry.mark_ready(pending.id, summary)
            stored = registry.get(pending.id)
            assert (stored.kind, stored.object_key, stored.summary) == (kind, f"{kind}s/{pending.id}", summary)
            assert type(stored.summary) is type(summary)
        assert [r.kind for r in registry.list(10, kind="pattern")] == ["pattern"]
    finally:
        engine.dispose()
