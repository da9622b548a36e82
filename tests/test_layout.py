"""The package's import directions: lower layers never import higher ones, nothing but the CLI
imports training from outside it, and no module imports itself in a circle (imports inside
functions count too)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# (importer, imported) between limner's subpackages that must never occur
FORBIDDEN = {
    ("models", "training"), ("pipelines", "training"), ("text", "models"), ("text", "training"),
    ("models", "pipelines"), ("models", "evaluation"), ("models", "serving"), ("data", "training"),
    ("metrics", "training"), ("evaluation", "training"), ("serving", "training"), ("export", "training"),
    ("pipelines", "export"), ("pipelines", "evaluation"), ("pipelines", "serving"),
}


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the modules of the same tree it imports (`root` is the folder holding the package)."""
    paths = {_module_name(path, root): path for path in root.rglob("*.py")}
    return {name: {m for m in _imports_of(path) if m in paths and m != name} for name, path in paths.items()}


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def subpackage(module: str) -> str:
    """limner.models.gan -> models; limner.cli -> cli."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def wrong_directions(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if (subpackage(a), subpackage(b)) in FORBIDDEN)


def training_importers(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if subpackage(b) == "training" and subpackage(a) not in ("training", "cli"))


def cycles(graph: dict[str, set[str]]) -> list[str]:
    """Each cycle a depth-first search meets, as 'a -> b -> a'."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                found.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return found


def test_limner_keeps_its_import_directions():
    graph = import_graph(SRC)
    assert len(graph) > 50  # the whole package was read
    assert wrong_directions(graph) == []
    assert training_importers(graph) == []
    assert cycles(graph) == []


def test_the_checks_find_what_is_planted(tmp_path):
    package = tmp_path / "limner"
    for folder in ("models", "training", "text"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "models" / "gan.py").write_text("def f():\n    from limner.training.loop import run\n")
    (package / "training" / "loop.py").write_text("import limner.models.gan\n")
    (package / "text" / "words.py").write_text("from limner.models.gan import f\n")
    graph = import_graph(tmp_path)
    assert wrong_directions(graph) == ["limner.models.gan -> limner.training.loop", "limner.text.words -> limner.models.gan"]
    assert training_importers(graph) == ["limner.models.gan -> limner.training.loop"]
    assert cycles(graph) == ["limner.models.gan -> limner.training.loop -> limner.models.gan"]
