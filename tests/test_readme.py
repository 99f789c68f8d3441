"""The README's promises: its zoo table is rendered from the published index, its commands exist."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("zoo_name", sorted(yaml.safe_load((ROOT / "params.yaml").read_text())["zoos"]))
def test_readme_zoo_table_is_rendered_from_the_index(zoo_name):
    from zoo.cards import readme_block

    zdir = yaml.safe_load((ROOT / "params.yaml").read_text())["zoos"][zoo_name]["dir"]
    index_file = ROOT / zdir / "index.json"
    if not index_file.is_file():
        pytest.skip(f"zoo {zoo_name!r} is not published ({index_file} absent)")
    readme = (ROOT / "README.md").read_text()
    block = re.search(rf"<!-- {zoo_name}-zoo-table -->\n(.*?)<!-- /{zoo_name}-zoo-table -->", readme, re.S)
    assert block, f"README.md lacks the {zoo_name}-zoo-table block"
    index = json.loads(index_file.read_text())
    assert block.group(1) == readme_block(index, link_dir=zdir), f"run `zoo sync-readme --zoo {zoo_name}`"


def test_readme_seed_papers_table_is_rendered_from_the_indexes():
    from zoo.cards import render_paper_table

    zoos = yaml.safe_load((ROOT / "params.yaml").read_text())["zoos"]
    published = {z["dir"]: json.loads((ROOT / z["dir"] / "index.json").read_text()) for z in zoos.values()
                 if (ROOT / z["dir"] / "index.json").is_file()}
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- seed-papers -->\n(.*?)<!-- /seed-papers -->", readme, re.S)
    assert block, "README.md lacks the seed-papers block"
    assert block.group(1) == render_paper_table(published), "run `zoo sync-readme`"
    assert "Diehl et al. 2015" in block.group(1)


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "make demo" in readme and "make test" in readme
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci/run").read_text()


USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_is_a_short_undated_users_guide():
    """At most 200 lines, no dates or commit hashes (history goes to CHANGELOG.md), and every document it
    points to exists."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for doc in USER_DOCS:
        text = doc.read_text()
        assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text), f"{doc.name}: a date; history goes to CHANGELOG.md"
        assert not re.search(r"\bcommit [0-9a-f]{7,40}\b", text), f"{doc.name}: a commit hash"
    for target in re.findall(r"`((?:docs|bench|zoo|pipeline)/[\w./-]+\.(?:md|py))`", readme) + ["CHANGELOG.md"]:
        assert (ROOT / target).exists(), target


def _readme_zoo_commands() -> list[str]:
    """Every `zoo ...` command in the README and docs/: the lines of their bash blocks (continuation lines
    joined, comments dropped) and their inline code spans."""
    readme = "\n".join(doc.read_text() for doc in USER_DOCS)
    lines = []
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", readme, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip().removeprefix("$ ")
            if line.startswith("zoo "):
                lines.append(line)
    lines += [span for span in re.findall(r"`(zoo [^`]+)`", readme) if not span.startswith("zoo --")]
    return lines


def test_readme_zoo_commands_parse():
    """Each `zoo` command the README shows names a real command, and where it shows arguments they are real
    options and enough arguments (parsed by the CLI, not run)."""
    import shlex

    import typer

    from zoo.cli import app

    group = typer.main.get_command(app)
    commands = _readme_zoo_commands()
    assert {c.split()[1] for c in commands} >= {"convert", "list", "info", "pull", "evaluate", "validate"}, commands
    for line in commands:
        name, *args = shlex.split(line)[1:]
        cmd = group.get_command(None, name)
        assert cmd is not None, f"README: {line!r}: no command {name!r} (zoo --help)"
        if not args:  # a command named in prose
            continue
        try:
            cmd.make_context(name, list(args))
        except Exception as err:  # click.UsageError: an unknown option, a missing argument
            raise AssertionError(f"README: {line!r}: {err}") from err
