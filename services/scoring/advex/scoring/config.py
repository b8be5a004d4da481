"""Scoring service configuration, read from environment variables.

Read only when `from_env` is called (by `main()`), never at import time, so
tests and embedding processes build a `ScoringConfig` directly.

- ADVEX_SCORING_ADDR: address to listen on (default 127.0.0.1:50054).
- ADVEX_SCORING_METRICS_ADDR: where Prometheus metrics are served
  (default 127.0.0.1:9454; off serves none).
- ADVEX_SCORING_MAX_SAMPLES: largest `samples` a header may announce
  (default 10,000,000). Memory per evaluation is about one byte per sample
  and attack plus two to four bytes per sample for the labels, so this bounds
  what one careless or hostile caller can make the service allocate.
- ADVEX_SCORING_MAX_ATTACKS: most attacks one header may list (default 256);
  with the samples limit it bounds the per-sample outcome bytes.
- ADVEX_SCORING_MAX_MODELS: most models (poison counts, the baseline
  included) one ScorePoisoning header may list (default 256); one byte per
  sample and model, so with the samples limit it bounds the same.
- ADVEX_LOG_LEVEL (read by `advex.core.serving.run_service`): DEBUG, INFO
  (default), WARNING, ERROR.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from advex.core.metrics import check_address
from advex.core.settings import EnvReader

DEFAULT_ADDRESS = "127.0.0.1:50054"
DEFAULT_METRICS_ADDRESS = "127.0.0.1:9454"
DEFAULT_MAX_SAMPLES = 10_000_000
DEFAULT_MAX_ATTACKS = 256
DEFAULT_MAX_MODELS = 256


@dataclass(frozen=True)
class ScoringConfig:
    address: str = DEFAULT_ADDRESS
    # Prometheus /metrics; "" serves none.
    metrics_address: str = DEFAULT_METRICS_ADDRESS
    max_samples: int = DEFAULT_MAX_SAMPLES
    max_attacks: int = DEFAULT_MAX_ATTACKS
    max_models: int = DEFAULT_MAX_MODELS

    def __post_init__(self) -> None:
        check_address(self.metrics_address, "ADVEX_SCORING_METRICS_ADDR")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ScoringConfig:
        env = EnvReader(os.environ if environ is None else environ)
        return cls(
            address=env.text("ADVEX_SCORING_ADDR", DEFAULT_ADDRESS),
            metrics_address=env.text_or_off("ADVEX_SCORING_METRICS_ADDR", DEFAULT_METRICS_ADDRESS),
            max_samples=env.integer("ADVEX_SCORING_MAX_SAMPLES", DEFAULT_MAX_SAMPLES, minimum=1),
            max_attacks=env.integer("ADVEX_SCORING_MAX_ATTACKS", DEFAULT_MAX_ATTACKS, minimum=1),
            max_models=env.integer("ADVEX_SCORING_MAX_MODELS", DEFAULT_MAX_MODELS, minimum=1),
        )


def from_env(environ: Mapping[str, str] | None = None) -> ScoringConfig:
    """Same as `ScoringConfig.from_env`."""
    return ScoringConfig.from_env(environ)
