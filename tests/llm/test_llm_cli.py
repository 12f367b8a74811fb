"""``python -m recbole_hnlm.llm``: stages, flags, and --key=value settings."""

from __future__ import annotations

import json

from llm_testdata import TINY

from recbole_hnlm.llm.__main__ import main


def test_cli_builds_the_template_cache(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # RecBole's logger writes log/ under the working directory
    common = [f"--data_path={tiny_root}", f"--llm_cache_dir={tmp_path / 'cache'}", "--state=ERROR"]
    assert main(["all", "--dataset", TINY, "--llm", "template", "--budget", "4", *common]) == 0
    (folder,) = (tmp_path / "cache" / TINY / "template-rules-v1").glob("split-*")
    summary = json.loads((folder / "negatives" / "summary.json").read_text())
    assert summary["budget"] == 0 and summary["neighbour"]["rows"] == summary["pairs"]
    assert main(["profiles", "--dataset", TINY, "--llm", "gpt4", *common]) == 2
    assert "error: Unknown llm backend 'gpt4'. Valid forms: template, smollm2" in capsys.readouterr().err
