"""The plugin as a user installs it: a wheel with its defaults, RecBole's zoo, imports that go one way."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from recbole.utils import get_model as recbole_get_model

import recbole_hnlm
from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.hnlm import HNLMRec

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "recbole_hnlm"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports, at any depth of the file (TYPE_CHECKING blocks left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
        for sub in ast.walk(node)
    }
    own = module_name(path)
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != own:
                found.add(name)
    return found


def test_the_import_graph_has_no_cycle():
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: imported_modules(path, set(files)) for name, path in files.items()}
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycle = trail[trail.index(target) :] + [target] if target in trail else [name, target]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target, [*trail, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert len(graph) > 40  # the walk saw the whole package


def test_recbole_finds_the_plugins_models():
    assert recbole_get_model("HNLMRec") is HNLMRec
    assert recbole_get_model("LightGCN").__module__.startswith("recbole.")


def test_recbole_own_run_stops_with_the_plugins_entry_point(tmp_path, monkeypatch):
    from recbole.quick_start import run_recbole

    monkeypatch.chdir(tmp_path)
    config = {"data_path": str(REPO / "dataset"), "state": "ERROR", "show_progress": False, "epochs": 1}
    with pytest.raises(ConfigurationError, match="run_recbole_hnlm.py --model=HNLMRec"):
        run_recbole(model="HNLMRec", dataset="ml-100k", config_dict=config)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The plugin's wheel, built from this checkout."""
    folder = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(folder), REPO],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return next(folder.glob("recbole_hnlm-*.whl"))


def test_the_wheel_carries_defaults_and_prompts(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {path.relative_to(REPO).as_posix() for path in PACKAGE.rglob("*") if path.suffix in (".yaml", ".txt")}
    assert shipped and shipped <= names, sorted(shipped - names)
    assert "recbole_hnlm/properties/overall.yaml" in names and "recbole_hnlm/hnlm/hnlm.yaml" in names
    assert any(name.endswith("entry_points.txt") for name in names)


def test_the_installed_wheel_trains_outside_the_checkout(wheel, tmp_path):
    """One epoch from the wheel installed in a folder of its own, run from an unrelated folder."""
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)]
    assert subprocess.run(install, capture_output=True, timeout=600).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = [
        sys.executable,
        "-c",
        "import sys, recbole_hnlm, recbole_hnlm.__main__ as cli; print('package', recbole_hnlm.__file__); "
        "sys.exit(cli.main(sys.argv[1:]))",
        "--model=BPR",
        "--dataset=ml-100k",
        f"--data_path={REPO / 'dataset'}",
        "--epochs=1",
        "--state=ERROR",
        f"--results_dir={elsewhere / 'results'}",
    ]
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"package {site}" in done.stdout  # the wheel's copy, not the checkout's
    assert "test recall@20" in done.stdout and list((elsewhere / "results").glob("BPR-uniform-ml-100k-*.json"))


def test_the_package_reads_no_file_outside_itself():
    """Defaults and prompts are found relative to the package, so a wheel in site-packages finds them."""
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "parents[1]" not in text and "PROJECT_ROOT" not in text, path
    assert recbole_hnlm.__version__
