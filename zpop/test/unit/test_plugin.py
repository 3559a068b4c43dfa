"""The twistd plugin: discoverable, logic-free, and namespace-package safe."""

from __future__ import annotations

import os

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

import zpop
import zpop.tap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(zpop.__file__)))


class PluginTests(SynchronousTestCase):
    def test_discovered(self) -> None:
        """getPlugins(IServiceMaker) finds exactly one "zpop", using zpop.tap."""
        makers = [m for m in getPlugins(IServiceMaker) if m.tapname == "zpop"]
        self.assertEqual(len(makers), 1)
        self.assertIs(makers[0].options, zpop.tap.Options)
        self.assertIs(makers[0].makeService, zpop.tap.makeService)

    def test_no_package_init(self) -> None:
        """twisted/ and twisted/plugins/ in the repo have no __init__.py."""
        self.assertEqual(
            [
                os.path.exists(os.path.join(REPO, "twisted", "__init__.py")),
                os.path.exists(os.path.join(REPO, "twisted", "plugins", "__init__.py")),
                os.path.exists(
                    os.path.join(REPO, "twisted", "plugins", "zpop_plugin.py")
                ),
            ],
            [False, False, True],
        )
