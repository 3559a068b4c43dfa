"""The layers of DESIGN.md section 2, kept by reading every module's imports:
protocols never reach the store but through services, the store knows no
protocol, mail or web code, and only the store speaks SQL."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator

from twisted.trial.unittest import SynchronousTestCase

import zpop

PACKAGE = os.path.dirname(os.path.abspath(zpop.__file__))

#: The protocol layer: what speaks to clients on the wire.
PROTOCOLS = (
    "zpop.pop3",
    "zpop.retrieval",
    "zpop.smtp",
    "zpop.smtp_reply",
    "zpop.smtp_transaction",
    "zpop.sasl",
    "zpop.commands",
    "zpop.limits",
)
#: What the store may import of zpop: itself and the plumbing below it.
STORE_MAY_IMPORT = ("zpop.store", "zpop.threads", "zpop.files")
#: What the store never imports, zpop or not.
STORE_NEVER = ("twisted.mail", "twisted.web", "twisted.cred")


def modules() -> Iterator[tuple[str, str]]:
    """(dotted name, path) of every module of the package, tests aside."""
    for directory, subdirectories, files in os.walk(PACKAGE):
        skipped = ("test", "__pycache__")
        subdirectories[:] = [d for d in subdirectories if d not in skipped]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                relative = os.path.relpath(path, os.path.dirname(PACKAGE))
                dotted = relative[: -len(".py")].replace(os.sep, ".")
                yield dotted.removesuffix(".__init__"), path


def imports(path: str) -> set[str]:
    """Every module a file imports, at any depth (also inside functions)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def module_level_imports(path: str, known: set[str]) -> set[str]:
    """The modules of ``known`` a file imports when it is imported (not
    inside functions or ``if TYPE_CHECKING:``)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found.update(n for n in names if n in known)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
    return found


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


class LayerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.imports = {name: imports(path) for name, path in modules()}

    def test_modules_found(self) -> None:
        """The walk sees the package's layers (so the rules below bite)."""
        for name in ("zpop.tap", "zpop.pop3", "zpop.store.sqlite", "zpop.outbound"):
            self.assertIn(name, self.imports)

    def test_protocols_never_import_the_store(self) -> None:
        """Protocol modules reach the store only through the services."""
        wrong = {
            name: sorted(i for i in found if within(i, ("zpop.store",)))
            for name, found in self.imports.items()
            if within(name, PROTOCOLS)
        }
        self.assertEqual({n: w for n, w in wrong.items() if w}, {})

    def test_store_imports_no_upper_layer(self) -> None:
        """The store imports only itself and plumbing of zpop, and nothing
        of twisted.mail, twisted.web or twisted.cred."""
        wrong = {
            name: sorted(
                i
                for i in found
                if (i.startswith("zpop") and not within(i, STORE_MAY_IMPORT))
                or within(i, STORE_NEVER)
            )
            for name, found in self.imports.items()
            if within(name, ("zpop.store",))
        }
        self.assertEqual({n: w for n, w in wrong.items() if w}, {})

    def test_only_the_store_speaks_sql(self) -> None:
        """sqlite3 is imported by the store's modules and nowhere else."""
        self.assertEqual(
            sorted(
                name
                for name, found in self.imports.items()
                if "sqlite3" in found and not within(name, ("zpop.store",))
            ),
            [],
        )

    def test_no_import_cycle(self) -> None:
        """No module of the package imports, through others, itself."""
        paths = dict(modules())
        graph = {
            name: module_level_imports(path, set(paths)) - {name}
            for name, path in paths.items()
        }
        cycles: list[list[str]] = []

        def visit(name: str, trail: list[str]) -> None:
            for other in sorted(graph[name]):
                if other in trail:
                    cycles.append(trail[trail.index(other) :] + [other])
                elif other not in done:
                    visit(other, trail + [other])
            done.add(name)

        done: set[str] = set()
        for name in sorted(graph):
            if name not in done:
                visit(name, [name])
        self.assertEqual(cycles, [])
