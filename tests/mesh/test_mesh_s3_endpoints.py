"""Storage signing URLs for a public S3 endpoint (what users reach) while the
mesh reaches the store at its internal one (ADVEX_S3_PUBLIC_ENDPOINT and
ADVEX_S3_ENDPOINT): users' transfers go to the public address, and an
evaluation runs with nothing listening there at all."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from advex.cli.client import Gateway, upload
from advex.core import object_routes
from advex.v1 import artifact_pb2, evasion_pb2, evaluation_pb2
from mesh_requests import evasion_request, run_to_end


class _PublishedPort:
    """127.0.0.2:PORT forwarded to the S3 endpoint: the host's published port
    in front of a container's MinIO, which the test can close."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.2", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.connections += 1
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


@pytest.fixture(scope="module")
def routes_restored():
    saved = dict(object_routes._routes)
    yield
    object_routes._routes.clear()  # routes are process-wide: none outlive this module
    object_routes._routes.update(saved)


def test_urls_name_the_public_endpoint_and_the_mesh_uses_the_internal_one(
    mesh_with, s3_endpoint, digits_files, routes_restored
):
    host, port = s3_endpoint.removeprefix("http://").split(":")
    published = _PublishedPort((host, int(port)))
    public = f"http://127.0.0.2:{published.port}"
    endpoints = dict(s3_endpoint=s3_endpoint, s3_public_endpoint=public)
    mesh = mesh_with(storage=dict(s3_public_endpoint=public), attack=endpoints, gateway=endpoints)
    gateway = Gateway.connect(mesh.gateway_address)
    try:
        created = gateway.artifacts.CreateUpload(artifact_pb2.CreateUploadRequest(
            kind=artifact_pb2.ARTIFACT_KIND_MODEL, display_name="m", size_bytes=1, sha256="0" * 64))
        assert created.upload_url.startswith(f"{public}/")
        model = upload(gateway, "model", Path(digits_files[0]))
        dataset = upload(gateway, "dataset", Path(digits_files[1]))
        url = gateway.artifacts.GetDownloadUrl(artifact_pb2.GetDownloadUrlRequest(name=model.name)).url
        assert url.startswith(f"{public}/")

        published.close()  # from here on, nothing listens at the public address
        request = evasion_request(model.name, dataset.name, [evasion_pb2.AttackSpec(attack="fgsm", eps=0.1)],
                                  max_samples=32)
        final = run_to_end(gateway, request)
        # The attack service downloaded both files and the gateway stored
        # the report page, all through URLs that name the closed address.
        assert final.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, final.error
        page = gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=final.name)).report.html_page
        assert page.name
    finally:
        gateway.close()
