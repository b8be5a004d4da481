"""The report's HTML page: rendered by the scoring service (RenderReport)
from the finished report and what the run gathered for it (`PageInputs`),
then stored through storage's ordinary upload as a REPORT artifact, like
anything else the gateway makes (Work.store_file).

A page that cannot be made does not fail the evaluation: its numbers are
the product, the page is their presentation. The report then has no
`html_page`, and the gateway log says why.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from advex.internal.v1 import records_pb2, scoring_service_pb2
from advex.v1 import artifact_pb2, report_pb2


# Rendering plots for a few hundred attacks takes seconds, not minutes.
RENDER_TIMEOUT_S = 300.0


@dataclass
class PageInputs:
    """What an evaluation's run collects for its page besides the report."""

    evasion_figures: scoring_service_pb2.EvasionFigures | None = None
    # (poison count, triggered test images through that model).
    poisoning_examples: tuple[int, records_pb2.EvasionExamples] | None = None
    class_names: list[str] = field(default_factory=list)
    # The attack service's software (EngineInfo.versions).
    versions: dict[str, str] = field(default_factory=dict)

    def add_versions(self, found) -> None:
        """Merges one stream's EngineInfo.versions: attacks served by
        replicas on different software show every value ("tensorflow /
        torch"), not the last one's."""
        for key, value in found.items():
            known = self.versions.get(key)
            if known is None:
                self.versions[key] = value
            elif value not in known.split(" / "):
                self.versions[key] = f"{known} / {value}"


def store_page(work, report: report_pb2.Report) -> report_pb2.ArtifactRef | None:
    """Renders and stores `report`'s page; None (logged) when that failed."""
    from advex.gateway.work import artifact_ref

    inputs: PageInputs = work.page
    request = scoring_service_pb2.RenderReportRequest(
        report=report, class_names=inputs.class_names, versions=inputs.versions
    )
    if inputs.evasion_figures is not None:
        request.evasion_figures.CopyFrom(inputs.evasion_figures)
    if inputs.poisoning_examples is not None:
        request.poisoning_examples_count, examples = inputs.poisoning_examples
        request.poisoning_examples.CopyFrom(examples)

    def make() -> report_pb2.ArtifactRef:
        work.stage("rendering the report page")
        with tempfile.TemporaryDirectory(prefix="advex-page-") as scratch:
            path = Path(scratch) / "report.html"
            with open(path, "wb") as page:
                for piece in work.track(work.downstream.scoring.RenderReport(request, timeout=RENDER_TIMEOUT_S)):
                    page.write(piece.html)
            work.stage("storing the report page")
            return artifact_ref(work.store_file(path, artifact_pb2.ARTIFACT_KIND_REPORT, f"report page, {report.name}"))

    return work.optional("page", make)
