"""The docs a user reads: a short README, links that resolve, every results folder indexed, examples that run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from recbole_hnlm.model.adapters import ADAPTER_REGISTRY

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
# Written by runs outside any matrix (run_recbole_hnlm.py, Tune), not results a reader looks up.
RUN_OUTPUT_FOLDERS = {"runs", "tune"}
DOC_PAGES = ("extending", "configuration", "llm", "finetune", "tuning", "gpu")
# [text](target) and ![alt](target); the target ends at whitespace or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(RESULTS.glob("**/README.md"))]


def relative_links(markdown: str) -> list[str]:
    """Targets of the Markdown links outside code blocks that point into the repository (no scheme, no anchor)."""
    prose = FENCE.sub("", markdown)
    targets = (match.group(1).split("#", 1)[0] for match in LINK.finditer(prose))
    return [target for target in targets if target and not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def test_relative_links_finds_links_and_images_but_not_urls_anchors_or_code():
    markdown = (
        "See [a](docs/a.md#part), ![plot](results/x/p.png) and [site](https://recbole.io), [here](#errors).\n"
        "```bash\necho [not](a/link.md)\n```\n"
    )
    assert relative_links(markdown) == ["docs/a.md", "results/x/p.png"]


def test_readme_is_at_most_200_lines():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail to docs/ or results/"


@pytest.mark.parametrize("markdown_file", _markdown_files(), ids=lambda path: str(path.relative_to(REPO)))
def test_every_relative_link_resolves(markdown_file):
    broken = [
        target
        for target in relative_links(markdown_file.read_text())
        if not (markdown_file.parent / target).resolve().exists()
    ]
    assert not broken, f"{markdown_file.relative_to(REPO)} links to missing files: {broken}"


def test_docs_and_results_index_exist_and_the_readme_links_them():
    links = set(relative_links((REPO / "README.md").read_text()))
    missing = [page for page in DOC_PAGES if not (REPO / "docs" / f"{page}.md").is_file()]
    assert not missing, f"docs/ lacks {missing}"
    assert {"results/README.md", "docs/extending.md", "docs/configuration.md", "LICENSE", "CITATION.cff"} <= links


def test_every_results_folder_is_in_the_index_and_has_a_readme():
    index = set(relative_links((RESULTS / "README.md").read_text()))
    indexed = {Path(target).parts[0] for target in index}
    folders = {path.name for path in RESULTS.iterdir() if path.is_dir()} - RUN_OUTPUT_FOLDERS
    assert folders, "results/ holds no folders"
    assert not folders - indexed, f"results/README.md does not list: {sorted(folders - indexed)}"
    missing = sorted(folder for folder in folders if not (RESULTS / folder / "README.md").is_file())
    assert not missing, f"results folders without a README.md: {missing}"
    unopened = sorted(
        folder
        for folder in folders
        if "## Experimental setting" not in (RESULTS / folder / "README.md").read_text().split("## Results")[0]
    )
    assert not unopened, f"results READMEs that do not start with their experimental setting: {unopened}"


def test_adapter_example_in_extending_registers_the_adapter():
    extending = (REPO / "docs" / "extending.md").read_text()
    start = extending.index("```python\nfrom recbole_hnlm.model.adapters import")
    snippet = extending[start + len("```python\n") : extending.index("```", start + 10)]
    try:
        exec(compile(snippet, "docs/extending.md", "exec"), {})
        adapter = ADAPTER_REGISTRY["MyGCN"]
        assert adapter.__name__ == "MyGCNAdapter" and adapter.pooling == "mean"
    finally:
        ADAPTER_REGISTRY.pop("MyGCN", None)


def test_licence_is_mit_and_the_citation_file_names_the_hnlmrec_paper():
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["license"] == "MIT"
    assert any("arXiv:2504.04726" in str(reference) for reference in citation["references"])
