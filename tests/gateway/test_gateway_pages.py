"""pages.store_page when the page cannot be made: the evaluation keeps its
numbers, the report has no page, the log says why; a cancel while
rendering still stops the run. (A page made and stored for real:
tests/mesh/test_mesh_report_page.py.)"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import grpc
import pytest

from advex.gateway.pages import PageInputs, store_page
from advex.gateway.work import Stopped, Work
from advex.v1 import report_pb2


class _Unavailable(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "scoring is restarting"


def _work(outcome="", stored=None):
    def render(request, timeout):
        raise _Unavailable()

    def check_stopped():
        if outcome:
            raise Stopped(outcome)

    work = SimpleNamespace(
        page=PageInputs(), stage=lambda text: None, track=lambda call: call, check_stopped=check_stopped,
        run=SimpleNamespace(outcome=outcome), downstream=SimpleNamespace(scoring=SimpleNamespace(RenderReport=render)),
        store_file=stored, row=SimpleNamespace(id="e1"),
    )
    work.optional = lambda what, make: Work.optional(work, what, make)  # the real policy
    return work


def test_a_page_that_cannot_be_rendered_is_logged_and_left_out(caplog):
    with caplog.at_level(logging.ERROR, logger="advex.gateway.work"):
        assert store_page(_work(), report_pb2.Report(name="evaluations/e1")) is None
    assert "no page for evaluations/e1: UNAVAILABLE scoring is restarting" in caplog.text


def test_a_cancel_while_rendering_still_stops_the_run():
    with pytest.raises(Stopped):
        store_page(_work(outcome="cancel"), report_pb2.Report(name="evaluations/e1"))


def test_versions_from_replicas_on_different_software_are_all_shown():
    page = PageInputs()
    page.add_versions({"keras_backend": "tensorflow", "keras": "3.15.1"})
    page.add_versions({"keras_backend": "torch", "keras": "3.15.1"})
    page.add_versions({"keras_backend": "tensorflow"})
    assert page.versions == {"keras_backend": "tensorflow / torch", "keras": "3.15.1"}
