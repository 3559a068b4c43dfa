"""The hypothesis profile of every property-based test module.

Derandomized, so CI and a developer see the same examples and a failure
reproduces; no deadline, since a loaded 2-core machine makes timings
meaningless; no example database left in the tree. Importing this module
loads the profile.
"""

import os
import shutil
import tempfile
from typing import Any

from hypothesis import HealthCheck, settings

settings.register_profile(
    "zpop",
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=30,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("zpop")


class MemoryTemp:
    """Mixin for a TestCase: ``mktemp`` under /dev/shm where there is one,
    so the many examples of a property that reads files cost no disk
    flushes."""

    addCleanup: Any  # noqa: N815 - unittest's name

    def mktemp(self) -> str:
        shm = "/dev/shm"
        base = tempfile.mkdtemp(
            prefix="zpop-properties-", dir=shm if os.path.isdir(shm) else None
        )
        self.addCleanup(shutil.rmtree, base, True)
        return os.path.join(base, "temp")
