"""The library's logger: `logging.getLogger("bpfjit")`, silent unless the application configures logging.

Fallbacks and notable events go here (nested runs skipped, compile-cache misses, compile times at DEBUG);
the library never prints. Nothing else lives here.
"""
from __future__ import annotations

import logging

logger = logging.getLogger("bpfjit")
logger.addHandler(logging.NullHandler())
