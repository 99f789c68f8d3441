"""The package stays readable top to bottom: no module in zoo/ over 500 lines, no function over 80."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 500, 80


def test_no_module_over_500_lines_and_no_function_over_80():
    long_modules, long_functions = [], []
    for path in sorted((ROOT / "zoo").rglob("*.py")):
        src = path.read_text()
        rel = path.relative_to(ROOT).as_posix()
        if len(src.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(f"{rel} ({len(src.splitlines())} lines)")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{rel}:{node.lineno} {node.name} ({n} lines)")
    assert not long_modules, f"split these modules (at most {MAX_MODULE_LINES} lines): {long_modules}"
    assert not long_functions, f"split these functions (at most {MAX_FUNCTION_LINES} lines): {long_functions}"
