"""The package's layering (``docs/architecture.md``) holds: which package may import which,
and no module outside ``core`` reads a layer's internals.

Both checks read the source (``ast``), so they fail on the import or attribute itself, not on
whatever behaviour it would later break.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: package -> the packages of ours it may import (besides itself). ``detectors`` is the model
#: side (detector, forecaster, training); ``detectors.stream`` scores streams with it; the NAB
#: harness ``detectors.nab`` may use both.
ALLOWED = {
    "core": set(),
    "envs": set(),
    "policies": {"core"},
    "agents": {"core", "policies", "envs"},
    "detectors": {"core"},
    "detectors.stream": {"core", "detectors"},
    "detectors.nab": {"core", "detectors", "detectors.stream"},
}

#: Attributes that only ``core`` may read: how a layer packs its weights, masks and state.
LAYER_INTERNALS = {"weight_ih", "weight_hh", "bias_ih", "bias_hh", "mask_ih", "mask_hh", "unpack_state",
                   "pack_state", "effective_weights", "omega", "phase", "amplitude", "weight_x", "router"}


def modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ALLOWED:
            yield rel, path


def package_of(rel: Path) -> str:
    parts = list(rel.parts[:-1])
    name = ".".join(parts[:2]) if ".".join(parts[:2]) in ALLOWED else parts[0]
    return name


def imported_packages(rel: Path, tree: ast.AST) -> set[str]:
    """Our packages that a module imports (absolute ``sparsernn.x`` or relative)."""
    found = set()
    here = ["sparsernn", *rel.parts[:-1]]
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                names = [".".join(base + ([node.module] if node.module else []))]
                if not node.module:  # from . import x
                    names = [".".join(base + [alias.name]) for alias in node.names]
            else:
                names = [node.module or ""]
        for name in names:
            parts = name.split(".")
            if parts[0] != "sparsernn" or len(parts) < 2:
                continue
            two = ".".join(parts[1:3])
            found.add(two if two in ALLOWED else parts[1])
    return found


@pytest.mark.parametrize("rel, path", list(modules()), ids=lambda v: str(v) if isinstance(v, Path) else "")
def test_imports_follow_the_layers(rel, path):
    package = package_of(rel)
    tree = ast.parse(path.read_text(), filename=str(path))
    wrong = imported_packages(rel, tree) - ALLOWED[package] - {package}
    if rel.name == "__init__.py":  # a package's front door may re-export its subpackages
        wrong = {name for name in wrong if not name.startswith(package + ".")}
    assert not wrong, f"{rel} ({package}) imports {sorted(wrong)}; allowed: {sorted(ALLOWED[package])}"


@pytest.mark.parametrize("rel, path", [(r, p) for r, p in modules() if r.parts[0] != "core"],
                         ids=lambda v: str(v) if isinstance(v, Path) else "")
def test_no_module_outside_core_reads_layer_internals(rel, path):
    tree = ast.parse(path.read_text(), filename=str(path))
    reads = sorted({f"{node.attr} (line {node.lineno})" for node in ast.walk(tree)
                    if isinstance(node, ast.Attribute) and node.attr in LAYER_INTERNALS})
    assert not reads, f"{rel} reads layer internals: {reads}"


def test_the_checks_can_fail(tmp_path):
    """A module of ``policies`` that imports ``detectors`` and reads ``weight_hh`` is caught."""
    tree = ast.parse("from sparsernn.detectors import x\nfrom ..detectors.stream import y\nw = layer.weight_hh\n")
    assert imported_packages(Path("policies/bad.py"), tree) == {"detectors", "detectors.stream"}
    assert package_of(Path("detectors/stream/scorer.py")) == "detectors.stream"
    assert package_of(Path("detectors/forecaster.py")) == "detectors"
