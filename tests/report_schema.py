"""Every report the tests get from a gateway is checked against the
published JSON Schema (docs/report.schema.json): tests/conftest.py wraps
each Gateway's channel with `ReportValidator`, so the CLI's reports and the
mesh tests' GetReport answers are all validated as they arrive."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import grpc

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "report.schema.json"


@cache
def validator():
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate_report(report) -> dict:
    """The report as the CLI prints it; AssertionError naming every place
    where it breaks the schema."""
    from advex.cli.render import to_dict

    printed = to_dict(report)
    errors = sorted(validator().iter_errors(printed), key=lambda e: list(e.absolute_path))
    assert not errors, "the report breaks docs/report.schema.json:\n" + "\n".join(
        f"  at {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors
    )
    return printed


class ReportValidator(grpc.UnaryUnaryClientInterceptor):
    """Validates GetReport answers (and counts them: `validated`)."""

    validated = 0

    def intercept_unary_unary(self, continuation, client_call_details, request):
        outcome = continuation(client_call_details, request)
        if client_call_details.method.endswith("/GetReport") and outcome.exception() is None:
            validate_report(outcome.result().report)
            ReportValidator.validated += 1
        return outcome
