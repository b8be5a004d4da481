"""Reading settings from environment variables, the same way in every service.

Each service's `config.py` calls these from its `from_env(environ)`, never at
import time. Empty values count as unset; a malformed value raises ValueError
naming the variable, so a service refuses to start with a clear message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class EnvReader:
    environ: Mapping[str, str]

    def _raw(self, key: str) -> str:
        return self.environ.get(key, "").strip()

    def text(self, key: str, default):
        return self._raw(key) or default

    def text_or_off(self, key: str, default: str) -> str:
        """Like `text`, with "off" meaning "" (a feature turned off)."""
        raw = self._raw(key)
        return "" if raw.lower() == "off" else raw or default

    def integer(self, key: str, default: int, minimum: int | None = None) -> int:
        raw = self._raw(key)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{key} must be a whole number, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"{key} must be >= {minimum}, got {value}")
        return value

    def number(self, key: str, default: float, minimum: float | None = None) -> float:
        raw = self._raw(key)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{key} must be a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number, got {raw!r}")
        if minimum is not None and value < minimum:
            raise ValueError(f"{key} must be >= {minimum:g}, got {value:g}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        raw = self._raw(key).lower()
        if not raw:
            return default
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        raise ValueError(f"{key} must be true or false, got {raw!r}")
