"""The worker's logs: JSON lines on stderr, one object per record."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO 8601 UTC), level, logger, event, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        d: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        d.update(getattr(record, "fields", {}))
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return json.dumps(d, default=str)


def setup_logging(level: str = "info") -> None:
    """JSON lines to stderr for the ``dexgrasp`` loggers (idempotent)."""
    root = logging.getLogger("dexgrasp")
    root.setLevel(level.upper())
    if not any(getattr(h, "_dexgrasp_json", False) for h in root.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(JsonLogFormatter())
        h._dexgrasp_json = True  # type: ignore[attr-defined]
        root.addHandler(h)
        root.propagate = False


__all__ = ["JsonLogFormatter", "setup_logging"]
