"""The shape of the house: four libraries on one floor that never import each other,
the application above them, no import cycles (importlib-loaded commands included), and
no SQL on the store's own tables outside ``store/``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("store", "embedder", "retrieval", "heads")
TOP = set(LIBRARIES) | {"sporeprint"}


def _imports(path: Path) -> set[str]:
    """Top-level project packages a module imports (absolute imports, any depth)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" \
                and node.args and isinstance(node.args[0], ast.Constant):
            out.add(str(node.args[0].value).split(".")[0])
    return out & TOP


def _module_graph() -> dict[str, set[str]]:
    """module name -> project modules it imports (resolved to existing modules)."""
    modules = {}
    for top in TOP:
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                if node.level:  # relative import inside a package
                    base = name.split(".")[: -node.level] if not path.name == "__init__.py" \
                        else name.split(".")[: len(name.split(".")) - node.level + 1]
                    targets = [".".join([*base, node.module])]
                else:
                    targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def test_libraries_never_import_each_other_or_the_application():
    for lib in LIBRARIES:
        for path in (ROOT / lib).rglob("*.py"):
            other = _imports(path) - {lib}
            assert not other, f"{path.relative_to(ROOT)} imports {sorted(other)}"


def test_commands_are_leaves_and_nothing_imports_the_cli():
    for path in (ROOT / "sporeprint").rglob("*.py"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        assert "sporeprint.cli" not in path.read_text(), path.relative_to(ROOT)


def test_no_import_cycles_between_modules():
    graph = _module_graph()
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                # a package's __init__ re-exporting its submodules is not a cycle
                cycle = trail[trail.index(dep):] + [dep] if dep in trail else [node, dep]
                if not any(a.startswith(b + ".") or b.startswith(a + ".")
                           for a, b in zip(cycle, cycle[1:], strict=False)):
                    raise AssertionError("import cycle: " + " -> ".join(cycle))
            elif dep not in state:
                visit(dep, [*trail, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


STORE_TABLES = ("observations", "images", "species", "embedding_spaces", "embedding_failures",
                "rejects", "encoders", "features", "splits", "runs", "predictions", "meta")


def test_no_sql_on_the_store_tables_outside_store():
    pattern = re.compile(r"(FROM|JOIN|INTO|UPDATE)\s+(" + "|".join(STORE_TABLES) + r")\b", re.I)
    for path in (ROOT / "sporeprint").rglob("*.py"):
        text = "\n".join(line for line in path.read_text().splitlines()
                          if ">>>" not in line)  # docstring examples are user SQL
        for call in re.finditer(r"\.sql\(\s*(f?\"[^\"]*\"|f?'[^']*')", text):
            assert not pattern.search(call.group(1)), \
                f"{path.relative_to(ROOT)}: {call.group(1)[:80]}"
        assert "fs.con" not in text and "store.con" not in text, path.relative_to(ROOT)


def _string_literals(path: Path) -> list[str]:
    """Every string constant of a module, f-strings with their literal parts joined."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append(node.value)
        elif isinstance(node, ast.JoinedStr):
            out.append("".join(v.value for v in node.values if isinstance(v, ast.Constant)))
    return out


def test_store_vocabularies_are_imported_not_spelled_out_in_the_application():
    from store import (
        CLASS_ID_MODES,
        ENCODER_INPUT_SCHEMA,
        PARTS,
        ROLES,
        SELECTIONS,
        SPLIT_SELECTIONS,
    )

    fields = set(ENCODER_INPUT_SCHEMA.names)
    vocabularies = {"ROLES": set(ROLES), "PARTS": set(PARTS), "SELECTIONS": set(SELECTIONS),
                    "CLASS_ID_MODES": set(CLASS_ID_MODES),
                    "SPLIT_SELECTIONS": set(SPLIT_SELECTIONS),
                    "ENCODER_INPUT_SCHEMA": fields, "ENCODER_INPUT_SCHEMA fields":
                    fields - {"observation_id"}}
    for path in (ROOT / "sporeprint").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Tuple | ast.List | ast.Set):
                continue
            if not node.elts or not all(isinstance(e, ast.Constant) and isinstance(e.value, str)
                                        for e in node.elts):
                continue
            values = {e.value for e in node.elts}
            for name, vocabulary in vocabularies.items():
                assert values != vocabulary, (
                    f"{path.relative_to(ROOT)}:{node.lineno} spells out store.{name}; "
                    "import it from store")


def test_one_newest_first_order_of_runs_and_the_application_asks_for_the_default_run():
    orders = []
    for path in (ROOT / "store").rglob("*.py"):
        for text in _string_literals(path):
            if re.search(r"\bFROM\s+runs\b", text, re.I):
                assert "ORDER BY" not in text.upper(), \
                    f"{path.relative_to(ROOT)} orders runs itself; use runs.NEWEST_FIRST"
            if re.search(r"ORDER BY created_at DESC, run_id", text):
                orders.append(path.relative_to(ROOT).as_posix())
    assert orders == ["store/runs.py"]
    picks = re.compile(r"(latest_runs|recent_runs)\([^)]*\(\s*[\"'](ensemble|train)[\"']\s*,\s*\)")
    for path in (ROOT / "sporeprint").rglob("*.py"):
        assert not picks.search(path.read_text()), \
            f"{path.relative_to(ROOT)} picks the default run itself; call fs.default_run()"


# Telling answers apart by their reason text: the kind of answer is the ``kind`` column /
# ``Decision.kind``; ``reason`` is text for people.
REASON_MATCHING = re.compile("|".join([
    r"reason\s+(NOT\s+)?I?LIKE\s+'[^']*(poison|unknown|argmax|prior|no usable|no accepted)",
    r"starts_?with\([^\n]*[\"'](poison[- _]risk|unknown|argmax|prior)",
    r"[\"']poison[- _]risk[^\"'\n]*[\"']\s+(not\s+)?in\b",
    r"\breason\b[^\n]*\.split\(\s*[\"']:",
    r"\.split\(\s*[\"']:[\"']\s*\)\s*\[0\][^\n]*\breason",
]), re.I)
# The one place allowed to read reason text: version-1 stores get their kinds from it once.
MIGRATION = ("store/schema.py", "_KIND_FROM_VERSION_1")


def _without_assignment(path: Path, name: str) -> str:
    """The file's text without the lines of the module-level assignment to ``name``."""
    text = path.read_text()
    lines = text.splitlines()
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name
                                                for t in node.targets):
            del lines[node.lineno - 1:node.end_lineno]
            return "\n".join(lines)
    raise AssertionError(f"{path.relative_to(ROOT)} has no {name}; update MIGRATION")


def test_nothing_tells_answers_apart_by_their_reason_text():
    found = []
    for top in (*TOP, "benchmarks", "tests"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "tests/test_architecture.py":
                continue
            text = _without_assignment(path, MIGRATION[1]) if rel == MIGRATION[0] \
                else path.read_text()
            found += [f"{rel}: {m.group(0)}" for m in REASON_MATCHING.finditer(text)]
    assert not found, "read the kind, not the reason: " + "; ".join(found)


def test_the_store_and_the_decision_rule_share_one_vocabulary_of_kinds():
    from heads.decision import KINDS
    from store.schema import PREDICTION_KINDS

    assert PREDICTION_KINDS == KINDS
    migration = _without_assignment(ROOT / "store/schema.py", "PREDICTION_KINDS")
    assert REASON_MATCHING.search((ROOT / "store/schema.py").read_text())  # the pattern works
    assert all(f"'{k}'" in migration for k in KINDS)  # the migration writes these words


def test_scoring_never_reaches_training():
    """Scoring reads what training wrote (heads, calibration records, rows); it never
    imports the training code, directly or through another module."""
    graph = _module_graph()
    for start in sorted(m for m in graph if m.split(".")[:2] == ["sporeprint", "scoring"]):
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            for dep in graph[node] - seen:
                assert dep != "sporeprint.training", f"{start} reaches sporeprint.training"
                seen.add(dep)
                todo.append(dep)


def _kind_name_uses(source: str, kinds) -> list[str]:
    """Where ``source`` tells index kinds apart by name: a comparison with a ``kind`` (a
    name or attribute) or with a kind name, or a kind name anywhere but as the default
    of a ``kind`` parameter (a dict keyed by kind names is a branch too)."""
    tree = ast.parse(source)
    defaults = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args.posonlyargs + node.args.args
            for arg, default in zip(args[len(args) - len(node.args.defaults):],
                                    node.args.defaults, strict=True):
                if arg.arg == "kind":
                    defaults.add(id(default))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(getattr(s, "id", getattr(s, "attr", None)) == "kind" for s in sides):
                found.append(f"line {node.lineno}: compares a kind")
        elif isinstance(node, ast.Constant) and node.value in kinds and id(node) not in defaults:
            found.append(f"line {node.lineno}: {node.value!r}")
    return found


def test_the_vector_index_asks_its_kind_instead_of_comparing_kind_names():
    """``retrieval/index.py`` does what every kind does; what differs by kind lives in the
    kind's class in ``retrieval/kinds.py``."""
    from retrieval import KINDS

    found = _kind_name_uses((ROOT / "retrieval/index.py").read_text(), KINDS)
    assert not found, "retrieval/index.py branches on the kind; move it to retrieval/kinds.py: " \
        + "; ".join(found)
    # the check sees the forms a kind branch takes
    for branch in ('if self.kind == "hnsw": pass', 'ok = kind in ("ivf_flat", "ivf_pq")',
                   'keys = {"hnsw": ("ef_search",)}.get(self.kind, ())'):
        assert _kind_name_uses(branch, KINDS), branch
    assert not _kind_name_uses('def f(kind="exact"): return kind', KINDS)
