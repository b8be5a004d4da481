"""The report page as a person sees it: a real evaluation's page, stored as
an artifact, downloaded with `advex report NAME --html`, opened from the
file in headless Chromium (Debian's chromium and chromium-driver, through
Selenium): every image loads, nothing is fetched from anywhere, the verdict
and the curve are on screen, it fits a phone's width and prints on A4. The
screenshots stay under var/test-artifacts/."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from advex.v1 import artifact_pb2, evasion_pb2, evaluation_pb2
from mesh_requests import evasion_request, run_cli, run_to_end

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"
PHONE_WIDTH = 390


def _chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver:
        pytest.fail("this test needs Debian's chromium and chromium-driver: run `make browser` (as root) or "
                    "apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1000,1400",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def _requests(driver) -> list[str]:
    """Every URL the page asked the network for since the last call."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_the_report_page_shows_its_verdict_and_curve_loads_every_image_and_fetches_nothing(
    mesh, gateway, uploaded_digits, tmp_path
):
    model, dataset = uploaded_digits
    attacks = [evasion_pb2.AttackSpec(attack=a, eps=eps, **({"steps": 10} if a == "pgd" else {}))
               for a in ("fgsm", "pgd") for eps in (0.05, 0.1, 0.2)]
    request = evasion_request(model.name, dataset.name, attacks, max_samples=60)
    request.evasion.seed = 0
    final = run_to_end(gateway, request)
    assert final.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, final.error
    report = gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=final.name)).report
    assert report.HasField("html_page"), "the report has no page: see the gateway log"
    stored = gateway.artifacts.GetArtifact(artifact_pb2.GetArtifactRequest(name=report.html_page.name)).artifact
    assert stored.kind == artifact_pb2.ARTIFACT_KIND_REPORT and stored.state == artifact_pb2.ARTIFACT_STATE_READY

    path = tmp_path / "report.html"
    code, out, err = run_cli("--gateway", mesh.gateway_address, "report", final.name, "--html", str(path))
    assert code == 0, err
    assert hashlib.sha256(path.read_bytes()).hexdigest() == report.html_page.sha256 == stored.sha256
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / "report-page.html")

    from selenium.webdriver.common.by import By

    driver = _chromium()
    try:
        driver.get(path.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0])"
        )
        # The curve, the confidence histograms, per-class bars, the confusion
        # matrix, and three images for each example sample.
        assert len(images) >= 4 + 3, images
        assert [alt for alt, loaded in images if not loaded] == [], "broken images"
        assert [u for u in _requests(driver) if not u.startswith(("data:", "file:"))] == []

        verdict = driver.find_element(By.ID, "verdict")
        assert verdict.is_displayed() and verdict.location["y"] < 200 and verdict.size["height"] > 50
        grade = verdict.find_element(By.CLASS_NAME, "grade").text
        assert grade in "ABCDF" and len(grade) == 1
        assert f"{report.evasion.robustness_score:.2f}" in verdict.text
        curve = driver.find_element(By.CSS_SELECTOR, "#curve img")
        assert curve.is_displayed() and curve.size["width"] > 500 and curve.size["height"] > 250
        driver.save_screenshot(str(ARTIFACTS / "report-page.png"))

        # A phone: one column, nothing wider than the screen outside the
        # tables that scroll on their own.
        driver.set_window_size(PHONE_WIDTH, 844)
        width = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"the page is {width[0]} px wide on a {width[1]} px screen"
        assert driver.find_element(By.CSS_SELECTOR, "#curve img").size["width"] <= width[1]
        driver.save_screenshot(str(ARTIFACTS / "report-page-phone.png"))

        # A4, as Chrome's print dialog would make it.
        pdf = base64.b64decode(driver.execute_cdp_cmd(
            "Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.69, "printBackground": True}
        )["data"])
        assert pdf.startswith(b"%PDF") and len(pdf) > 20_000
        (ARTIFACTS / "report-page.pdf").write_bytes(pdf)
        assert [u for u in _requests(driver) if not u.startswith(("data:", "file:"))] == []
    finally:
        driver.quit()


@pytest.mark.parametrize(
    "kind", [artifact_pb2.ARTIFACT_KIND_REPORT, artifact_pb2.ARTIFACT_KIND_OUTCOMES, artifact_pb2.ARTIFACT_KIND_SHARD]
)
def test_callers_cannot_upload_what_advex_makes(gateway, kind):
    import grpc

    with pytest.raises(grpc.RpcError) as info:
        gateway.artifacts.CreateUpload(artifact_pb2.CreateUploadRequest(kind=kind, size_bytes=10, sha256="0" * 64))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "made by AdvEx for an evaluation, not uploaded" in info.value.details()
