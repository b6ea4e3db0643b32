"""The ``usagetrace`` logger and the never-raise guard.

``logging`` is imported on first use only: a process where nothing goes wrong
never pays for it.
"""

import sys

LOGGER_NAME = "usagetrace"
_logger = None


def _get():
    global _logger
    if _logger is None:
        import logging

        _logger = logging.getLogger(LOGGER_NAME)
    return _logger


def debug(msg: str, *args: object, exc_info: bool = False) -> None:
    """Log at debug level on the ``usagetrace`` logger; never raises."""
    try:
        _get().debug(msg, *args, exc_info=exc_info)
    except Exception:  # pragma: no cover - logging itself broken
        pass


def internal_error(where: str) -> None:
    """Record that an internal error was swallowed, with its traceback at debug level."""
    try:
        exc = sys.exc_info()[1]
        _get().debug("usagetrace internal error in %s: %r", where, exc, exc_info=True)
    except Exception:  # pragma: no cover
        pass
