"""docs/deploy.md's table of environment variables cannot drift from the
code: every variable the services and the CLI read is listed, nothing
else is, and each configuration default is the one the code uses."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from advex.attack.config import AttackConfig
from advex.gateway.config import GatewayConfig
from advex.scoring.config import ScoringConfig
from advex.storage.config import StorageConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {
    GatewayConfig: "services/gateway/advex/gateway/config.py",
    StorageConfig: "services/storage/advex/storage/config.py",
    AttackConfig: "services/attack/advex/attack/config.py",
    ScoringConfig: "services/scoring/advex/scoring/config.py",
}
# Read by the code without going through a config class (the keras backend
# picks KERAS_BACKEND itself).
OTHER_VARIABLES = {"KERAS_BACKEND"}


def _table() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "deploy.md").read_text().split("## Environment variables", 1)[1]
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([A-Z][A-Z0-9_]+)`", cells[0]) if len(cells) == 4 else None
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} is listed twice"
            rows[match.group(1)] = cells
    return rows


def _read_by_code() -> set[str]:
    names = set()
    for path in (ROOT / "services").rglob("*.py"):
        names.update(re.findall(r"\"(ADVEX_[A-Z0-9_]+)\"", path.read_text()))
    return names | OTHER_VARIABLES


def test_every_variable_the_code_reads_is_in_the_table_and_no_other():
    listed, read = set(_table()), _read_by_code()
    assert read - listed == set(), f"read by the code but not in docs/deploy.md: {sorted(read - listed)}"
    assert listed - read == set(), f"in docs/deploy.md but read by no code: {sorted(listed - read)}"


@pytest.mark.parametrize("config", list(CONFIGS), ids=lambda c: c.__name__)
def test_each_default_in_the_table_is_the_codes(config):
    source = (ROOT / CONFIGS[config]).read_text()
    pairs = re.findall(r"(\w+)=env\.\w+\(\s*\"(ADVEX_\w+)\"", source)
    assert len(pairs) >= 4, "the config's from_env was not understood"
    defaults = config.from_env({})
    dynamic = {f.name for f in dataclasses.fields(config) if f.default_factory is not dataclasses.MISSING}
    table = _table()
    for field, variable in pairs:
        if field in dynamic:
            continue
        cell = table[variable][2]
        value = getattr(defaults, field)
        if value is None:
            assert cell.startswith("unset"), f"{variable}: the code's default is unset, the table says {cell!r}"
        else:
            shown = re.match(r"`([^`]*)`", cell)
            assert shown and shown.group(1) == str(value), f"{variable}: the code's default is {value!r}, the table says {cell!r}"
