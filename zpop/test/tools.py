"""Shared test helpers: external tools that integration tests drive."""

from __future__ import annotations

import os
import shutil

from twisted.trial.unittest import SkipTest


def require_tool(name: str) -> str:
    """The path of an external program, or skip the test without it.

    In CI (``CI`` set) a missing tool is a failure, not a skip: ``.ci/run``
    installs every tool, so a skip there would hide a broken install step.
    """
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (run-tests installs it when run as root)"
        if os.environ.get("CI"):
            raise AssertionError(message)
        raise SkipTest(message)
    return path
