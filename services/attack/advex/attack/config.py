"""Attack service settings, read from environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from advex.core.metrics import check_address
from advex.core.object_routes import check_endpoint
from advex.core.settings import EnvReader


@dataclass(frozen=True)
class AttackConfig:
    address: str = "127.0.0.1:50053"
    # Where this service connects for presigned URLs that name the public
    # endpoint (see advex.core.object_routes); both unset: where URLs say.
    s3_endpoint: str | None = None
    s3_public_endpoint: str | None = None
    # Prometheus /metrics; "" serves none.
    metrics_address: str = "127.0.0.1:9453"
    # Downloaded models and datasets, named by their SHA-256, so a shard that
    # comes back to this replica does not download them again.
    cache_dir: str = "var/attack-cache"
    # Samples per forward/backward pass when a request leaves it at 0; 0
    # here: chosen per model from attack_memory_bytes (engine.auto_batch_size).
    batch_size: int = 0
    # The memory one attack batch may use for the model's activations and
    # their gradients, when the batch size is chosen automatically.
    attack_memory_bytes: int = 1024**3
    max_download_bytes: int = 2 * 1024**3
    # Loaded models kept in memory (each holds its weights and a logits copy).
    model_cache_size: int = 4
    # Largest model input, in values per sample (free dimensions count as
    # 16): 2048x2048x4. Bigger inputs are refused before any batch is built.
    max_input_elements: int = 16_777_216
    # Largest output of any one layer, in values per sample; refused before the
    # model runs (a 1 GiB float32 activation per sample).
    max_activation_elements: int = 268_435_456
    # Largest model, in parameters (2 GB of float32 weights).
    max_parameters: int = 500_000_000
    # Largest dataset once its images are float32 (and labels int64); the
    # storage service checks uploads against the same variable.
    max_dataset_bytes: int = 4 * 1024**3

    def __post_init__(self) -> None:
        check_address(self.metrics_address, "ADVEX_ATTACK_METRICS_ADDR")
        check_endpoint(self.s3_endpoint, "ADVEX_S3_ENDPOINT")
        check_endpoint(self.s3_public_endpoint, "ADVEX_S3_PUBLIC_ENDPOINT")
        if self.batch_size < 0:
            raise ValueError("ADVEX_ATTACK_BATCH_SIZE must be >= 0 (0: chosen per model)")
        if self.attack_memory_bytes < 1:
            raise ValueError("ADVEX_ATTACK_MEMORY_BYTES must be >= 1")
        if self.max_download_bytes < 1:
            raise ValueError("ADVEX_MAX_DOWNLOAD_BYTES must be >= 1")
        if self.model_cache_size < 1:
            raise ValueError("ADVEX_ATTACK_MODEL_CACHE must be >= 1")
        for name, value in (
            ("ADVEX_ATTACK_MAX_INPUT_ELEMENTS", self.max_input_elements),
            ("ADVEX_ATTACK_MAX_ACTIVATION_ELEMENTS", self.max_activation_elements),
            ("ADVEX_ATTACK_MAX_PARAMETERS", self.max_parameters),
            ("ADVEX_MAX_DATASET_BYTES", self.max_dataset_bytes),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1")
        if not self.cache_dir:
            raise ValueError("ADVEX_ATTACK_CACHE_DIR must not be empty")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AttackConfig:
        defaults = cls()

        env = EnvReader(environ)
        return cls(
            address=env.text("ADVEX_ATTACK_ADDR", defaults.address),
            metrics_address=env.text_or_off("ADVEX_ATTACK_METRICS_ADDR", defaults.metrics_address),
            s3_endpoint=env.text("ADVEX_S3_ENDPOINT", None),
            s3_public_endpoint=env.text("ADVEX_S3_PUBLIC_ENDPOINT", None),
            cache_dir=env.text("ADVEX_ATTACK_CACHE_DIR", defaults.cache_dir),
            batch_size=env.integer("ADVEX_ATTACK_BATCH_SIZE", defaults.batch_size),
            attack_memory_bytes=env.integer("ADVEX_ATTACK_MEMORY_BYTES", defaults.attack_memory_bytes),
            max_download_bytes=env.integer("ADVEX_MAX_DOWNLOAD_BYTES", defaults.max_download_bytes),
            model_cache_size=env.integer("ADVEX_ATTACK_MODEL_CACHE", defaults.model_cache_size),
            max_input_elements=env.integer("ADVEX_ATTACK_MAX_INPUT_ELEMENTS", defaults.max_input_elements),
            max_activation_elements=env.integer(
                "ADVEX_ATTACK_MAX_ACTIVATION_ELEMENTS", defaults.max_activation_elements
            ),
            max_parameters=env.integer("ADVEX_ATTACK_MAX_PARAMETERS", defaults.max_parameters),
            max_dataset_bytes=env.integer("ADVEX_MAX_DATASET_BYTES", defaults.max_dataset_bytes),
        )
