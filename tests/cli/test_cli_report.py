"""`advex report --html` where a report has no page (made before pages
existed, or its rendering failed). Downloading a real page is
tests/mesh/test_mesh_report_page.py."""

from __future__ import annotations

import pytest

from advex.cli.client import CliError
from advex.cli.main import _write_page
from advex.v1 import report_pb2


def test_a_report_without_a_page_says_why_and_what_still_works():
    with pytest.raises(CliError, match="has no HTML page: it was made before pages existed, or rendering it failed"):
        _write_page(None, report_pb2.Report(name="evaluations/old"), None, False)
