"""The level of raftfleet_ray's loggers, from the ``RAFTFLEET_LOG_LEVEL`` environment variable.

``RAFTFLEET_LOG_LEVEL=INFO python app.py`` sets the level of the ``raftfleet_ray`` logger (and
so of every ``raftfleet_ray.*`` logger) in the driver, and in the fleet's actors too:
``runtime/factory.py`` passes the variable on in their ``runtime_env``. Applied when
``raftfleet_ray`` is imported; no Ray import here (the pure core imports this package).

Records go to the application's handlers when it has configured logging
(``logging.basicConfig``); otherwise (an actor, a bare script) a fallback handler writes them
to stderr, which Ray sends to the worker's log file and, with ``log_to_driver``, to the driver.
"""

from __future__ import annotations

import logging
import os
import sys

LOG_LEVEL_ENV = "RAFTFLEET_LOG_LEVEL"
LOGGER_NAME = "raftfleet_ray"


class _FallbackHandler(logging.StreamHandler):
    """Writes to stderr only while the root logger has no handler of its own (so records are
    never printed twice once the application calls ``logging.basicConfig``)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers:
            super().emit(record)


def parse_level(value: str | None) -> int | None:
    """``"INFO"``, ``"debug"``, ``"20"`` -> the level; None for unset, empty or unknown."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.lstrip("-").isdigit():
        return int(value)
    level = logging.getLevelName(value.upper())
    return level if isinstance(level, int) else None


def apply_env_log_level() -> int | None:
    """Set the ``raftfleet_ray`` logger's level from ``RAFTFLEET_LOG_LEVEL`` if set; return it."""
    raw = os.environ.get(LOG_LEVEL_ENV)
    level = parse_level(raw)
    logger = logging.getLogger(LOGGER_NAME)
    if level is None:
        if raw and raw.strip():
            logger.warning("%s=%r is not a logging level (use DEBUG, INFO, WARNING, ERROR); ignored",
                           LOG_LEVEL_ENV, raw)
        return None
    logger.setLevel(level)
    if not any(isinstance(h, _FallbackHandler) for h in logger.handlers):
        logger.addHandler(_FallbackHandler())
    return level


def env_for_actors() -> dict[str, str]:
    """``{"RAFTFLEET_LOG_LEVEL": ...}`` if this process has it set (to pass on to actors), else ``{}``."""
    raw = os.environ.get(LOG_LEVEL_ENV)
    return {LOG_LEVEL_ENV: raw} if raw and raw.strip() else {}
