"""The embedded S3 endpoint's log under `advex up`: requests are not logged
one by one, and no signature or credential reaches a log line."""

from __future__ import annotations

import logging

from advex.cli.embedded_s3 import quiet_s3_log

URL = ("PUT /advex/uploads/01a2?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=advex-local/20261203/us-east-1/s3/"
       "aws4_request&X-Amz-Date=20261203T173700Z&X-Amz-Expires=900&X-Amz-Signature=c4c2a97037044 HTTP/1.1")


def test_requests_are_quiet_and_signatures_never_logged(caplog):
    quiet_s3_log()
    server_log = logging.getLogger("werkzeug")
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        server_log.setLevel(logging.WARNING)  # caplog lowered it; quiet_s3_log's level is what runs
        server_log.info('127.0.0.1 - - "%s" 200 -', URL)
        server_log.warning('127.0.0.1 - - "%s" 500 -', URL)
    assert len(caplog.records) == 1  # the INFO request line is gone
    line = caplog.records[0].getMessage()
    assert "X-Amz-Signature=<redacted>" in line and "X-Amz-Credential=<redacted>" in line
    assert "c4c2a97037044" not in line and "advex-local" not in line
    assert "X-Amz-Date=20261203T173700Z" in line  # the rest stays, to debug with
