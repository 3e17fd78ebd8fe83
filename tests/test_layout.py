"""The layout rules, read from the code: each domain package owns its tables and keeps its SQL in
its ``store`` modules (``store.py``, ``*_store.py``); ``engine/storage`` is shared plumbing that
imports no other engine package; domain packages import each other downward only; assets, the
CLI and orchestration hold no SQL."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lowest first: a package may import the ones before it, never one after it.
LAYERS = [
    "data",
    "signals",
    "strategies",
    "backtest",
    "validation",
    "portfolio",
    "approvals",
    "brokers",
    "risk",
    "execution",
]
# Leaf modules every package may use; they import no engine package themselves.
SHARED = {"engine.errors", "engine.http", "engine.markdown", "engine.plots", "engine.versions"}
SQL = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w[\w.]*\s+SET|DELETE\s+FROM)\b", re.S
)


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _engine_imports(path: Path) -> set[str]:
    """Every engine module ``path`` imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "engine":
                found |= {f"engine.{alias.name}" for alias in node.names}
            elif node.module.startswith("engine."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("engine.")}
    return found


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _owner(path: Path) -> str | None:
    relative = path.relative_to(ROOT / "engine").parts
    return relative[0] if len(relative) > 1 else None


def _sql_strings(path: Path) -> list[tuple[int, str]]:
    """String literals that look like SQL statements (docstrings aside)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value.split("\n")[0][:60])
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and SQL.search(node.value)
    ]


def test_every_engine_package_has_a_place_in_the_layers() -> None:
    packages = {p.name for p in (ROOT / "engine").iterdir() if (p / "__init__.py").exists()}
    assert packages == set(LAYERS) | {"storage", "cli"}  # cli: the top, it may use any


def test_storage_imports_no_other_engine_package() -> None:
    offending = {
        f"{path.relative_to(ROOT)} imports {module}"
        for path in _modules("engine/storage")
        for module in _engine_imports(path)
        if _package(module) != "storage"
    }
    assert not offending


def test_shared_modules_import_no_engine_package() -> None:
    for module in SHARED:
        path = ROOT / (module.replace(".", "/") + ".py")
        if path.exists():
            assert _engine_imports(path) <= SHARED, path


@pytest.mark.parametrize("layer", LAYERS)
def test_domain_packages_import_only_downward(layer: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(layer) + 1]) | {"storage"}
    offending = {
        f"{path.relative_to(ROOT)} imports {module}"
        for path in _modules(f"engine/{layer}")
        for module in _engine_imports(path)
        if module not in SHARED and _package(module) not in allowed
    }
    assert not offending


def test_sql_lives_only_in_store_modules_and_storage() -> None:
    offending = []
    for folder in ("engine", "assets", "orchestration"):
        for path in _modules(folder):
            in_store = path.name.endswith("store.py") and _owner(path) in LAYERS
            if in_store or path.parent == ROOT / "engine" / "storage":
                continue
            offending += [f"{path.relative_to(ROOT)}:{n}: {text}" for n, text in _sql_strings(path)]
    assert not offending


def test_the_rules_see_what_they_forbid(tmp_path: Path) -> None:
    """The readers above would let everything through if they found nothing to read."""
    module = tmp_path / "m.py"
    module.write_text(
        '"""SELECT a FROM docstrings is fine."""\n'
        "def f(conn):\n"
        "    from engine.execution.store import open_orders\n"
        '    conn.execute("SELECT 1 FROM orders")\n'
        '    conn.execute("UPDATE orders SET status = 1")\n'
    )
    assert _engine_imports(module) == {"engine.execution.store"}
    assert [n for n, _ in _sql_strings(module)] == [4, 5]
