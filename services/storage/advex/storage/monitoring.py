"""What storage counts for Prometheus (served by advex.core.metrics)."""

from __future__ import annotations

from prometheus_client import Counter

UPLOADS_VERIFIED = Counter(
    "advex_uploads_verified_total", "Uploads that passed verification and became READY, by artifact kind.", ("kind",)
)
UPLOADS_REJECTED = Counter(
    "advex_uploads_rejected_total",
    "Uploads that failed verification and became REJECTED, by artifact kind and reason.",
    ("kind", "reason"),
)

# The reasons an upload is rejected: a small fixed set, fit for a label.
SIZE_MISMATCH = "size_mismatch"  # not the declared number of bytes
SHA256_MISMATCH = "sha256_mismatch"  # not the declared SHA-256
TOO_LARGE = "too_large"  # over a size limit (RESOURCE_EXHAUSTED)
BAD_FORMAT = "bad_format"  # not a valid file of its kind
UNEXPECTED = "unexpected"  # the verifier itself failed
