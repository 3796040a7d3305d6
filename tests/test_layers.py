"""The package's import layers, read from the source (an AST walk of devicepool/, imports
inside functions included): no import cycles, layers import only downward, no private
name of another subpackage, and few private names shared between protocol modules."""

import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1] / "devicepool"

#: the layers, bottom up: a module imports modules of its own layer or of layers below
LAYERS = ("shared", "audio", "features", "plotting", "models", "persistence", "estimators", "forensic",
          "datasets", "protocol", "cli", "entry")
#: root-level modules: shared internals (bottom) and entry points (top)
SHARED = ("_io", "_validation", "_typing", "_text", "_progress")
ENTRY = ("experiments", "__main__")
#: what a module may import from the package root itself (``from devicepool import X``)
FROM_ROOT = {"__version__"}

#: private names other subpackages import today (none: keep it so)
KNOWN_PRIVATE_CROSS = set()
#: private names one module of devicepool.protocol may import from another
MAX_PRIVATE_IN_PROTOCOL = 10


def _modules():
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = ["devicepool", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _imports():
    """``(importer, imported module, name or None)`` for every devicepool import."""
    found = []
    for mod, path in MODULES.items():
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(mod, a.name, None) for a in node.names if a.name.startswith("devicepool")]
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                if not target.startswith("devicepool"):
                    continue
                for a in node.names:  # a submodule (``from . import x``) or a name
                    sub = f"{target}.{a.name}"
                    found.append((mod, sub, None) if sub in MODULES else (mod, target, a.name))
    return [(m, t, n) for m, t, n in found if t != m]


IMPORTS = _imports()


def _third_party():
    """``module -> top-level names of the non-standard-library packages it imports``."""
    found = {}
    for mod, path in MODULES.items():
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
        found[mod] = {n for n in names if n != "devicepool" and n not in sys.stdlib_module_names
                      and n != "__future__"}
    return found


def _subpackage(mod):
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(mod):
    sub = _subpackage(mod)
    if sub in SHARED:
        return "shared"
    if sub in ENTRY:
        return "entry"
    return sub if sub in LAYERS else None


def _private(target, name):
    parts = target.split(".")[1:] + ([name] if name else [])
    return any(p.startswith("_") and not p.startswith("__") for p in parts)


def test_every_module_has_a_layer():
    assert [m for m in MODULES if m != "devicepool" and _layer(m) is None] == []


def test_no_import_cycles():
    graph = {m: sorted({t for i, t, _ in IMPORTS if i == m and t in MODULES}) for m in MODULES}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for t in graph[m]:
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(MODULES):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_layers_import_only_downward():
    upward = []
    for importer, target, name in IMPORTS:
        if importer == "devicepool":
            continue  # the package's facade re-exports every layer
        if target == "devicepool":
            if name not in FROM_ROOT:
                upward.append((importer, f"devicepool.{name}"))
            continue
        if LAYERS.index(_layer(target)) > LAYERS.index(_layer(importer)):
            upward.append((importer, target))
    assert upward == []


def test_no_private_name_of_another_subpackage():
    crossing = set()
    for importer, target, name in IMPORTS:
        if _subpackage(target) in SHARED or _subpackage(importer) == _subpackage(target):
            continue  # root-level shared internals are for every layer
        if _private(target, name):
            crossing.add((importer, target + (f".{name}" if name else "")))
    assert crossing - KNOWN_PRIVATE_CROSS == set()
    assert KNOWN_PRIVATE_CROSS - crossing == set(), "fixed: remove it from KNOWN_PRIVATE_CROSS"


def test_few_private_names_shared_between_protocol_modules():
    shared = sorted(f"{importer} <- {target}.{name}" for importer, target, name in IMPORTS
                    if _subpackage(importer) == _subpackage(target) == "protocol"
                    and _private(target, name))
    assert len(shared) <= MAX_PRIVATE_IN_PROTOCOL, "\n".join(shared)


def test_the_deprecated_alias_imports_only_public_names():
    assert [(t, n) for i, t, n in IMPORTS if i == "devicepool.experiments" and _private(t, n)] == []


# ----------------------------------------------------------------------------- docs/design.md

DESIGN = ROOT.parent / "docs" / "design.md"
BEGIN, END = "<!-- layer table: begin (python tests/test_layers.py writes it) -->", "<!-- layer table: end -->"


def layer_table():
    """The layer table of ``docs/design.md``, from what the code imports."""
    third = _third_party()
    rows = ["| layer | modules | imports (devicepool layers; other packages) |", "|---|---|---|"]
    for layer in LAYERS:
        mods = sorted(m for m in MODULES if m != "devicepool" and _layer(m) == layer)
        below = {_layer(t) for i, t, _ in IMPORTS if i in mods and t in MODULES and t != "devicepool"}
        below = [f"`{b}`" for b in LAYERS if b in below - {layer}]
        packages = sorted(set().union(*(third[m] for m in mods)))
        if layer in ("shared", "entry"):
            names = ", ".join(f"`{m.split('.', 1)[1]}`" for m in mods)
        else:
            names = f"`devicepool.{layer}` ({len(mods)} module{'s' * (len(mods) > 1)})"
        rows.append(f"| {layer} | {names} | {', '.join(below) or '-'}; {', '.join(packages) or '-'} |")
    return "\n".join(rows)


def _design_with(table):
    text = DESIGN.read_text()
    head, rest = text.split(BEGIN, 1)
    return head + BEGIN + "\n" + table + "\n" + END + rest.split(END, 1)[1]


def test_design_md_shows_the_layers_the_code_imports():
    assert _design_with(layer_table()) == DESIGN.read_text(), "run: python tests/test_layers.py"


if __name__ == "__main__":
    DESIGN.write_text(_design_with(layer_table()))
