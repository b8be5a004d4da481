"""docs/report.schema.json: generated from the protos (and current), a valid
draft 2020-12 schema, and strict enough to catch a wrong report. That every
report the tests get validates is tests/report_schema.py's interceptor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from advex.v1 import evasion_pb2, report_pb2
from report_schema import SCHEMA, validate_report, validator

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_schema_is_what_the_protos_give():
    # In a process of its own: protoc's compiler and TensorFlow's protobuf
    # in one process can crash it.
    made = subprocess.run(
        [sys.executable, str(ROOT / "protos" / "json_schema.py"), "advex.v1.Report"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    assert json.loads(SCHEMA.read_text()) == json.loads(made.stdout), (
        "docs/report.schema.json is stale: run `make proto` and commit"
    )


def test_the_schema_carries_the_protos_comments():
    defs = json.loads(SCHEMA.read_text())["$defs"]
    result = defs["advex.v1.AttackResult"]["properties"]
    assert "clean-correct" in result["attacked_samples"]["description"]
    assert defs["advex.v1.AttackResult"]["additionalProperties"] is False


def _report() -> report_pb2.Report:
    return report_pb2.Report(evasion=report_pb2.EvasionReport(
        samples=10, clean_accuracy=0.9, robustness_score=float("nan"),
        attacks=[report_pb2.AttackResult(attack="fgsm", eps=0.1, successful_samples=3,
                                         spec=evasion_pb2.AttackSpec(attack="fgsm", eps=0.1))],
    ))


def test_a_report_validates_with_its_int64_as_strings_and_nan_spelled_out():
    printed = validate_report(_report())
    assert printed["evasion"]["samples"] == "10" and printed["evasion"]["robustness_score"] == "NaN"


@pytest.mark.parametrize("break_it, phrase", [
    (lambda r: r["evasion"].update(samples=10), "is not of type 'string'"),
    (lambda r: r["evasion"]["attacks"][0].update(surprise=1), "Additional properties are not allowed"),
    (lambda r: r["evasion"]["attacks"][0].pop("adversarial_accuracy"), "'adversarial_accuracy' is a required"),
    (lambda r: r["evasion"].update(clean_accuracy="high"), "is not valid under any of the given schemas"),
])
def test_a_wrong_report_is_caught(break_it, phrase):
    from advex.cli.render import to_dict

    printed = to_dict(_report())
    break_it(printed)
    messages = [e.message for e in validator().iter_errors(printed)]
    assert any(phrase in m for m in messages), messages
