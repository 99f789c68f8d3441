"""The README's promises: its zoo table is rendered from the published index, its commands exist."""
from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_demo_table_is_rendered_from_the_index():
    from zoo.cards import readme_block

    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- demo-zoo-table -->\n(.*?)<!-- /demo-zoo-table -->", readme, re.S)
    assert block, "README.md lacks the demo-zoo-table block"
    index = json.loads((ROOT / "models/demo/index.json").read_text())
    assert block.group(1) == readme_block(index, link_dir="models/demo"), "run `zoo sync-readme --zoo demo`"


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "make demo" in readme and "make test" in readme
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci/run").read_text()
