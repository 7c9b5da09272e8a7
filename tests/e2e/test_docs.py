"""The docs tell the truth about the nodes ComfyUI registers: every node of the pack, each of its
inputs (with its default, and whether it is optional) and outputs has a row in docs/nodes.md, the
README's node table links to each, every relative link and anchor in README.md and docs/ resolves
(anchors as GitHub makes them from headings), and every test file the docs and the code's comments
name exists (tests/ moves with the code it tests)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support.comfy_harness import pack_nodes
from support.common import REPO

ROOT = Path(REPO)
NODES_MD = ROOT / "docs" / "nodes.md"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def sections(text: str) -> list[str]:
    """The text of each level-3 section (heading included)."""
    return ["### " + part for part in re.split(r"^### ", text, flags=re.M)[1:]]


def rows(section: str) -> list[list[str]]:
    """Table rows as cells (a ``\\|`` inside a cell is a literal bar, not a column)."""
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            for line in section.splitlines() if line.startswith("| `")]


def names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell.split("(")[0])


def default_documented(default, cell: str) -> bool:
    cell = cell.replace("−", "-").replace("`", "")
    if isinstance(default, str):
        return default in cell if default else ("empty" in cell)
    if isinstance(default, bool):
        return str(default).lower() in cell.lower()
    tokens = {t.lstrip("+") for t in re.split(r"[\s,]+", cell)}
    return bool({str(default), f"{default:g}"} & tokens)


def test_every_registered_node_input_and_output_is_in_the_node_reference(comfy):
    nodes = pack_nodes(comfy)
    assert len(nodes) >= 17, sorted(nodes)
    by_id = {}
    for section in sections(NODES_MD.read_text()):
        for nid in re.findall(r"`(LEDiff\w+)`", section.split("\n\n")[1] if "\n\n" in section else section):
            by_id[nid] = section
    missing = sorted(set(nodes) - set(by_id))
    assert not missing, f"docs/nodes.md has no section naming {missing}"
    problems = []
    for nid, cls in sorted(nodes.items()):
        schema = cls.GET_SCHEMA()
        section = by_id[nid]
        if schema.display_name not in section.splitlines()[0]:
            problems.append(f"{nid}: the section heading does not say {schema.display_name!r}")
        documented = {}
        for row in rows(section):
            for name in names(row[0]):
                documented.setdefault(name, []).append(row)
        for item in schema.inputs:
            found = documented.get(item.id)
            if not found:
                problems.append(f"{nid}: input {item.id!r} has no row")
                continue
            row = found[0]
            default = getattr(item, "default", None)
            if default is not None and not default_documented(default, row[2]):
                problems.append(f"{nid}: input {item.id!r} documents default {row[2]!r}, the node has {default!r}")
            if item.optional and "optional" not in " ".join(row[:2]):
                problems.append(f"{nid}: input {item.id!r} is optional but its row does not say so")
        for item in schema.outputs or []:
            if item.id not in documented:
                problems.append(f"{nid}: output {item.id!r} has no row")
    assert not problems, "\n".join(problems)


def test_the_readme_links_every_node_to_its_reference(comfy):
    readme = (ROOT / "README.md").read_text()
    for nid in pack_nodes(comfy):
        line = next((line for line in readme.splitlines() if f"(`{nid}`)" in line), None)
        assert line, f"README's node table has no row for {nid}"
        assert "](docs/nodes.md#" in line, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_anchors_resolve(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # an external address
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading with anchor #{anchor} in {file.name}")
    assert not broken, "\n".join(broken)


TEST_PATH = re.compile(r"\btests/[\w./-]+\.(?:py|txt|md|cpp|exr)\b")


def test_the_test_files_the_docs_and_the_code_name_exist():
    sources = [*DOCS, *(path for folder in ("lediff_core", "lediff_train", "lediff_runner", "nodes", "scripts",
                                            "benchmarks", "tests")
                        for path in sorted((ROOT / folder).rglob("*")) if path.suffix in (".py", ".sh", ".md"))]
    named = {(path, mention) for path in sources for mention in TEST_PATH.findall(path.read_text())}
    assert len(named) > 20
    missing = sorted(f"{path.relative_to(ROOT)} names {mention}" for path, mention in named
                     if not (ROOT / mention).exists())
    assert not missing, "\n".join(missing)


def test_slug_follows_githubs_rules():
    # anchors GitHub gives these headings (seen on any GitHub page with such headings)
    assert slug("Highlight Bracket / Shadow Bracket") == "highlight-bracket--shadow-bracket"
    assert slug("Save EXR's colorspace") == "save-exrs-colorspace"
    assert slug("Files (`nodes/io/`)") == "files-nodesio"


def test_the_template_category_is_the_folder_the_readme_clones_into():
    """ComfyUI's template browser lists a pack's workflows under its folder name (the route's keys:
    test_workflows checks it on a server whose pack folder is ``comfy_server.PACK_FOLDER``), so the
    category every doc names is the README's clone command's folder."""
    from support.comfy_server import PACK_FOLDER

    readme = (ROOT / "README.md").read_text()
    (folder,) = re.findall(r"^git clone \S+(?: \S+)* (\S+)$", readme, flags=re.M)
    assert folder == PACK_FOLDER
    stated = [(doc.name, name) for doc in DOCS
              for name in re.findall(r"template browser under \*\*([^*]+)\*\*", doc.read_text())]
    assert stated and all(name == folder for _, name in stated), (folder, stated)


CORE_VIDEO_NODES = ("LoadVideo", "Video Slice", "GetVideoComponents", "CreateVideo", "SaveVideo", "SaveWEBM")


def test_core_video_node_options_named_in_the_docs_exist(comfy):
    """Wherever a doc names an option of one of ComfyUI's own video nodes ("Load Video has only
    `file`", "**Trim Video**'s `start_time` / `duration`"), the genuine host's node has that input."""
    named = 0
    for node_id in CORE_VIDEO_NODES:
        cls = comfy.node_class(node_id)
        assert cls.__module__.endswith("nodes_video"), cls.__module__
        schema = cls.INPUT_TYPES()
        inputs = {name for group in schema.values() if isinstance(group, dict) for name in group}
        display = re.escape(comfy.nodes.NODE_DISPLAY_NAME_MAPPINGS.get(node_id, node_id))
        spans = r"((?:`[^`]+`(?:\s*(?:/|,|and|or)\s*)?)+)"  # `a` / `b`, `c` and `d`
        phrase = re.compile(rf"{display}(?:\*\*)?(?:'s| has only)\s+{spans}")
        for doc in DOCS:
            for options in phrase.findall(doc.read_text()):
                for option in re.findall(r"`([^`]+)`", options):
                    named += 1
                    assert option in inputs, f"{doc.name}: {node_id} has no input {option!r} (it has {sorted(inputs)})"
    assert named >= 3  # video.md names Load Video's file and Trim Video's start_time and duration
