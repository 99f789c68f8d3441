"""dvc.yaml lists each stage's code dependencies: exactly the modules the stage can import.

A stage ``s`` runs ``pipeline/s.py`` -> :func:`zoo.stages.main` -> ``zoo.stages.s.s``. Its code is the import
closure of those three files over the ``zoo`` package, read from the source (imports inside functions count:
the stages import their heavy modules on use). dvc.yaml must list exactly that closure (a directory stands for
all of its modules), so that a change to any module a stage imports reruns the stage, and a change anywhere
else does not. tests/test_pipeline.py checks the other direction at run time: every module a demo stage really
imported is among its dependencies.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("prepare", "train", "export", "calibrate", "convert", "evaluate", "package", "publish")


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def _imports(path: Path) -> set[Path]:
    """The zoo modules ``path`` imports anywhere (zoo/__init__.py: at module level only; its API is lazy)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if path == ROOT / "zoo" / "__init__.py" else ast.walk(tree)
    parts = path.relative_to(ROOT).with_suffix("").parts
    package = list(parts[:-1])
    names: set[str] = set()
    for n in nodes:
        if isinstance(n, ast.Import):
            names |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                base = ".".join(package[: len(package) - (n.level - 1)] + ([n.module] if n.module else []))
            names |= {base} | {f"{base}.{a.name}" for a in n.names}
    found = set()
    for name in names:
        bits = name.split(".")
        if bits[0] != "zoo":
            continue
        for i in range(1, len(bits) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py too
            f = _module_file(".".join(bits[:i]))
            if f is not None:
                found.add(f)
    return found


def stage_code(stage: str) -> set[str]:
    """The files stage ``stage`` can import, relative to the repository root."""
    seen: set[Path] = set()
    todo = [ROOT / "pipeline" / f"{stage}.py", ROOT / "zoo/stages/__init__.py", ROOT / f"zoo/stages/{stage}.py"]
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo.extend(_imports(f) - seen)
    return {p.relative_to(ROOT).as_posix() for p in seen}


def expand(deps: list[str]) -> set[str]:
    """Code dependencies as files: a directory stands for every module in it."""
    out = set()
    for d in deps:
        p = ROOT / d
        out |= {f.relative_to(ROOT).as_posix() for f in p.rglob("*.py")} if p.is_dir() else {d}
    return out


def declared_code() -> dict[str, list[tuple[str, list[str]]]]:
    """Per stage kind, each dvc.yaml stage of that kind with its code dependencies (zoo/ and pipeline/ paths)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out: dict[str, list[tuple[str, list[str]]]] = {s: [] for s in STAGES}
    for name, stage in stages.items():
        kind = name.split("-")[0]
        body = stage.get("do", stage)
        code = [d for d in body.get("deps", []) if d.startswith(("zoo/", "pipeline/"))]
        out[kind].append((name, code))
    return out


@pytest.mark.parametrize("stage", STAGES)
def test_dvc_yaml_lists_exactly_the_modules_each_stage_imports(stage):
    want = stage_code(stage)
    defined = declared_code()[stage]
    assert defined, f"dvc.yaml has no {stage} stage"
    for name, code in defined:
        have = expand(code)
        missing, extra = sorted(want - have), sorted(have - want)
        assert not missing and not extra, (
            f"dvc.yaml stage {name}: a change to {missing} would not rerun it (add them to its deps)"
            if missing else f"dvc.yaml stage {name}: {extra} are not imported by it (remove them from its deps)")


def test_the_closure_follows_imports_inside_functions():
    """The stages import their heavy modules inside functions: those must count."""
    code = stage_code("evaluate")
    assert {"zoo/simulation.py", "zoo/evaluation.py", "zoo/serialization.py", "zoo/spiking/neuron.py"} <= code
    assert "zoo/cards.py" not in code and "zoo/interchange/nir.py" not in code
    assert "zoo/training.py" not in stage_code("prepare")
