"""The library's logger: `logging.getLogger("bpfjit")` with a NullHandler, so nothing is shown unless the
application configures logging (e.g. `logging.basicConfig(level=logging.DEBUG)`).

bpfjit never prints: notable events and silent fallbacks are logged here instead (DEBUG for routine events
such as compile times and cache hits, WARNING for fallbacks a user may want to know about). Modules get a
child logger with `get_logger(__name__)`. Nothing else lives here.
"""
from __future__ import annotations

import logging

LOGGER_NAME = "bpfjit"

logger = logging.getLogger(LOGGER_NAME)
logger.addHandler(logging.NullHandler())


def get_logger(module: str) -> logging.Logger:
    """The logger of a bpfjit module (`get_logger(__name__)`: "bpfjit.jit.compiler" ...), always a child of the
    "bpfjit" logger (a module run as a script, `__name__ == "__main__"`, gets "bpfjit.__main__")."""
    if module != LOGGER_NAME and not module.startswith(LOGGER_NAME + "."):
        module = f"{LOGGER_NAME}.{module}"
    return logging.getLogger(module)
