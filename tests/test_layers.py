"""The rule between the layers (ARCHITECTURE.md), read from the sources' import statements.

- A command (``chatprobe.commands.*``) imports library modules only: never another
  command, never the pytest plugin (shared pieces live in ``targets``, ``loadrun``,
  ``conformrun``...).
- The vocabulary modules import the standard library and one another, nothing else.
- ``import locust`` monkey-patches the whole process (gevent): only the Locust glue
  module may import it.

Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import fnmatch
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "chatprobe"

VOCABULARY = frozenset({"rules", "findings", "errors", "paths", "rootcause", "redact", "children"})
# The one place `import locust` may appear: paths relative to src/chatprobe, as glob patterns.
LOCUST_GLUE: tuple[str, ...] = ("load/locust*.py", "load/users.py")


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    package = _name(path) if path.name == "__init__.py" else _name(path).rpartition(".")[0]
    return _imports_in(path.read_text(encoding="utf-8"), package)


def _imports_in(source: str, package: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, a module of ``package``;
    ``from a import b`` yields ``a.b`` too, so that ``from chatprobe import pytest_plugin``
    is seen."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _where(path: Path, line: int, name: str) -> str:
    return f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"


def test_the_sources_are_found() -> None:
    names = {_name(p) for p in _modules()}
    assert {"chatprobe.commands.load", "chatprobe.targets", "chatprobe.metrics"} <= names
    assert {n.removeprefix("chatprobe.") for n in names} >= VOCABULARY


def test_commands_import_library_modules_only() -> None:
    bad = []
    for path in sorted((PACKAGE / "commands").glob("*.py")):
        me = _name(path)
        for line, name in _imports(path):
            other_command = _within(name, "chatprobe.commands") and name not in {"chatprobe.commands", me}
            if other_command or _within(name, "chatprobe.pytest_plugin"):
                bad.append(_where(path, line, name))
    assert not bad, "a command imports another command or the pytest plugin:\n" + "\n".join(bad)


@pytest.mark.parametrize("module", sorted(VOCABULARY))
def test_vocabulary_imports_stdlib_and_vocabulary_only(module: str) -> None:
    path = PACKAGE / f"{module}.py"
    bad = []
    for line, name in _imports(path):
        top = name.partition(".")[0]
        if top == "__future__" or top in sys.stdlib_module_names:
            continue
        if top == "chatprobe" and (name == "chatprobe" or name.split(".")[1] in VOCABULARY):
            continue
        bad.append(_where(path, line, name))
    assert not bad, f"{module} is vocabulary (stdlib and vocabulary only):\n" + "\n".join(bad)


def test_only_the_locust_glue_imports_locust() -> None:
    bad = []
    for path in _modules():
        relative = path.relative_to(PACKAGE).as_posix()
        if any(fnmatch.fnmatch(relative, pattern) for pattern in LOCUST_GLUE):
            continue
        bad.extend(_where(path, line, name) for line, name in _imports(path) if _within(name, "locust"))
    assert not bad, f"only {', '.join(LOCUST_GLUE)} may import locust:\n" + "\n".join(bad)


def test_the_rules_catch_what_they_forbid() -> None:
    """The import reader sees the forms a violation could take (so a green run means something)."""
    source = "from chatprobe import pytest_plugin\ndef f():\n    import locust.env\nfrom . import sweep\n"
    found = {name for _, name in _imports_in(source, "chatprobe.commands")}
    assert {"chatprobe.pytest_plugin", "locust.env", "chatprobe.commands.sweep"} <= found
