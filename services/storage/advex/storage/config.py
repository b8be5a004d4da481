"""Storage service settings, read from environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from advex.core.metrics import check_address
from advex.core.object_routes import check_endpoint
from advex.core.settings import EnvReader
from advex.storage.verify import DEFAULT_MAX_DATASET_BYTES

# S3 copies a single object with one CopyObject call only up to 5 GiB; the
# verified upload is promoted to its final key that way.
_S3_SINGLE_COPY_LIMIT = 5 * 1024**3


@dataclass(frozen=True)
class StorageConfig:
    address: str = "127.0.0.1:50052"
    # Prometheus /metrics; "" serves none.
    metrics_address: str = "127.0.0.1:9452"
    # None means AWS S3 itself; set it for MinIO, moto or another S3 endpoint.
    s3_endpoint: str | None = None
    # What presigned URLs name, when users reach the store at another address
    # than storage does (compose: http://localhost:9000 vs http://minio:9000).
    s3_public_endpoint: str | None = None
    bucket: str = "advex"
    s3_region: str = "us-east-1"
    # None leaves credentials to boto3's usual chain (env, profile, IAM role).
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    database_url: str = "sqlite:///var/storage.db"
    upload_url_ttl_s: int = 900
    download_url_ttl_s: int = 3600
    max_upload_bytes: int = 2 * 1024**3
    # Largest dataset accepted, measured as its images in float32
    # (N*H*W*C*4 bytes), the form the attack service holds them in memory.
    max_dataset_bytes: int = DEFAULT_MAX_DATASET_BYTES
    create_bucket: bool = True
    # How often staging objects PUT after their upload was settled are
    # removed (also once at start); 0 only at start.
    staging_sweep_s: int = 3600

    def __post_init__(self) -> None:
        check_address(self.metrics_address, "ADVEX_STORAGE_METRICS_ADDR")
        check_endpoint(self.s3_endpoint, "ADVEX_S3_ENDPOINT")
        check_endpoint(self.s3_public_endpoint, "ADVEX_S3_PUBLIC_ENDPOINT")
        if self.upload_url_ttl_s <= 0 or self.download_url_ttl_s <= 0:
            raise ValueError("ADVEX_UPLOAD_URL_TTL_S and ADVEX_DOWNLOAD_URL_TTL_S must be > 0 seconds")
        # SigV4 presigned URLs are valid for at most 7 days.
        if max(self.upload_url_ttl_s, self.download_url_ttl_s) > 7 * 24 * 3600:
            raise ValueError("presigned URL lifetimes are limited to 604800 s (7 days) by S3")
        if not 0 < self.max_upload_bytes <= _S3_SINGLE_COPY_LIMIT:
            raise ValueError(f"ADVEX_MAX_UPLOAD_BYTES must be between 1 and {_S3_SINGLE_COPY_LIMIT} (5 GiB)")
        if self.max_dataset_bytes <= 0:
            raise ValueError("ADVEX_MAX_DATASET_BYTES must be > 0 (bytes of a dataset's images as float32)")
        if self.staging_sweep_s < 0:
            raise ValueError("ADVEX_STAGING_SWEEP_S must be >= 0 seconds (0: sweep only at start)")
        if not self.bucket:
            raise ValueError("ADVEX_S3_BUCKET must not be empty")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> StorageConfig:
        defaults = cls()

        env = EnvReader(environ)
        return cls(
            address=env.text("ADVEX_STORAGE_ADDR", defaults.address),
            metrics_address=env.text_or_off("ADVEX_STORAGE_METRICS_ADDR", defaults.metrics_address),
            s3_endpoint=env.text("ADVEX_S3_ENDPOINT", None),
            s3_public_endpoint=env.text("ADVEX_S3_PUBLIC_ENDPOINT", None),
            bucket=env.text("ADVEX_S3_BUCKET", defaults.bucket),
            s3_region=env.text("ADVEX_S3_REGION", defaults.s3_region),
            s3_access_key_id=env.text("ADVEX_S3_ACCESS_KEY_ID", None),
            s3_secret_access_key=env.text("ADVEX_S3_SECRET_ACCESS_KEY", None),
            database_url=env.text("ADVEX_STORAGE_DATABASE_URL", defaults.database_url),
            upload_url_ttl_s=env.integer("ADVEX_UPLOAD_URL_TTL_S", defaults.upload_url_ttl_s),
            download_url_ttl_s=env.integer("ADVEX_DOWNLOAD_URL_TTL_S", defaults.download_url_ttl_s),
            max_upload_bytes=env.integer("ADVEX_MAX_UPLOAD_BYTES", defaults.max_upload_bytes),
            max_dataset_bytes=env.integer("ADVEX_MAX_DATASET_BYTES", defaults.max_dataset_bytes),
            create_bucket=env.flag("ADVEX_S3_CREATE_BUCKET", defaults.create_bucket),
            staging_sweep_s=env.integer("ADVEX_STAGING_SWEEP_S", defaults.staging_sweep_s),
        )
