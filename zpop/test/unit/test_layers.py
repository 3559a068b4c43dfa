"""The layers of DESIGN.md section 2, kept by reading every module's imports:
protocols never reach the store but through services, the store knows no
protocol, mail or web code, and only the store speaks SQL; and, by reading
the unit tests' own source, that they never reach the disk."""

from __future__ import annotations

import ast
import configparser
import os
from collections.abc import Iterator

from twisted.trial.unittest import SkipTest, SynchronousTestCase

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
    "zpop.imap",
    "zpop.web",
)
#: What the store may import of zpop: itself and the plumbing below it.
STORE_MAY_IMPORT = ("zpop.store", "zpop.threads", "zpop.files")
#: What the store never imports, zpop or not.
STORE_NEVER = ("twisted.mail", "twisted.web", "twisted.cred")


#: The unit tests, which must not touch the disk (see DISK below).
UNIT_TESTS = os.path.join(PACKAGE, "test", "unit")
#: Modules a unit test module may not import: they exist to reach the disk.
DISK_MODULES = ("sqlite3", "tempfile", "zpop.store.sqlite")
#: Names a unit test module may not import or use: a SQLite store, or the
#: helpers of zpop.test.stores that make or alter a database file.
DISK_NAMES = frozenset({"SQLiteStore", "make_sqlite_store", "refuse_message_updates"})
#: Calls that make a temporary path (trial's TestCase.mktemp, tempfile's).
DISK_CALLS = frozenset({"mktemp"})


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


def unit_test_files() -> list[str]:
    """The path of every Python file under zpop/test/unit."""
    found = []
    for directory, subdirectories, files in os.walk(UNIT_TESTS):
        subdirectories[:] = [d for d in subdirectories if d != "__pycache__"]
        found.extend(os.path.join(directory, n) for n in files if n.endswith(".py"))
    return sorted(found)


def disk_uses(source: str, path: str) -> list[tuple[int, str]]:
    """(line, what) for each way ``source`` reaches the disk: an import of
    DISK_MODULES, an import or use of DISK_NAMES, a call of DISK_CALLS."""
    found: set[tuple[int, str]] = set()
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if within(alias.name, DISK_MODULES):
                    found.add((node.lineno, f"imports {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if node.module and not node.level and within(node.module, DISK_MODULES):
                found.add((node.lineno, f"imports from {module}"))
            for alias in node.names:
                if alias.name in DISK_NAMES:
                    found.add((node.lineno, f"imports {alias.name} from {module}"))
        elif isinstance(node, ast.Name) and node.id in DISK_NAMES:
            found.add((node.lineno, f"uses {node.id}"))
        elif isinstance(node, ast.Attribute) and node.attr in DISK_NAMES:
            found.add((node.lineno, f"uses {ast.unparse(node)}"))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else None
            if isinstance(func, ast.Name):
                name = func.id
            if name in DISK_CALLS:
                found.add((node.lineno, f"calls {ast.unparse(func)}()"))
    return sorted(found)


class LayerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.imports = {name: imports(path) for name, path in modules()}

    def test_modules_found(self) -> None:
        """The walk sees the package's layers (so the rules below bite)."""
        names = ("zpop.tap", "zpop.pop3", "zpop.store.sqlite", "zpop.outbound")
        for name in (*names, "zpop.web.site"):
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


class UnitTestsNeedNoDiskTests(SynchronousTestCase):
    """zpop/test/unit runs on MemoryStore, Clock and StringTransport: a test
    that needs a database file or a temporary directory belongs in
    zpop/test/integration (as test_auth_sqlite, on the unit set-up)."""

    def test_unit_tests_need_no_disk(self) -> None:
        """No module under zpop/test/unit imports SQLiteStore,
        make_sqlite_store, refuse_message_updates, sqlite3 or tempfile, or
        calls mktemp (self.mktemp() or tempfile.mktemp())."""
        files = unit_test_files()
        self.assertIn(os.path.join(UNIT_TESTS, "test_layers.py"), files)
        wrong = []
        for path in files:
            with open(path, encoding="utf-8") as f:
                source = f.read()
            relative = os.path.relpath(path, os.path.dirname(PACKAGE))
            wrong.extend(
                f"{relative}:{line}: {what}" for line, what in disk_uses(source, path)
            )
        if wrong:
            self.fail(
                "unit tests must not touch the disk; move these tests to"
                " zpop/test/integration (a mixin keeps the set-up shared):\n  "
                + "\n  ".join(wrong)
            )

    def test_disk_uses_found(self) -> None:
        """The check sees each form of reaching the disk, and not the
        names merely written in a string."""
        source = (
            "import sqlite3\n"
            "import tempfile as t\n"
            "from zpop.store import MemoryStore, SQLiteStore\n"
            "from zpop.test import stores\n"
            "from zpop.store.sqlite import migrate\n"
            "stores.make_sqlite_store(self.mktemp())\n"
            "mktemp()\n"
            "'SQLiteStore sqlite3 self.mktemp()'\n"
        )
        self.assertEqual(
            disk_uses(source, "example.py"),
            [
                (1, "imports sqlite3"),
                (2, "imports tempfile"),
                (3, "imports SQLiteStore from zpop.store"),
                (5, "imports from zpop.store.sqlite"),
                (6, "calls self.mktemp()"),
                (6, "uses stores.make_sqlite_store"),
                (7, "calls mktemp()"),
            ],
        )


class PackagingTests(SynchronousTestCase):
    def test_every_package_is_installed(self) -> None:
        """setup.cfg lists every package of the source tree: a subpackage
        left out works in the editable install the tests use, and is
        missing from a real ``pip install .``."""
        setup_cfg = os.path.join(os.path.dirname(PACKAGE), "setup.cfg")
        if not os.path.exists(setup_cfg):
            raise SkipTest("not a source checkout: no setup.cfg beside zpop")
        parser = configparser.ConfigParser()
        parser.read(setup_cfg, encoding="utf-8")
        listed = set(parser["options"]["packages"].split())
        found = {
            os.path.relpath(directory, os.path.dirname(PACKAGE)).replace(os.sep, ".")
            for directory, _, files in os.walk(PACKAGE)
            if "__init__.py" in files
        }
        self.assertEqual(sorted(found - listed), [])
