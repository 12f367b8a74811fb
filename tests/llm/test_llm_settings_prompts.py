"""LLM settings read through the Config with llm.yaml under it, and the editable prompt files."""

import shutil

import pytest

from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.llm import LLMSettings
from recbole_hnlm.llm.prompts import PROFILE_PROMPTS, PromptTemplate, prompt_hash, read_prompts
from recbole_hnlm.llm.settings import DEFAULT_PROMPT_DIR, backend_kind, llm_defaults


def test_defaults_come_from_llm_yaml_and_the_config_wins():
    settings = LLMSettings.from_config({"llm": "template", "llm_batch_size": 3, "seed": 7})
    assert settings.backend == "template" and settings.batch_size == 3 and settings.seed == 7
    assert settings.max_new_tokens == llm_defaults()["llm_max_new_tokens"]
    assert LLMSettings.from_config({}).backend == "smollm2"


@pytest.mark.parametrize(
    ("backend", "kind"),
    [("template", "template"), ("smollm2", "smollm2"), ("hf:/models/x", "hf"), ("openai:http://h:1/v1", "openai")],
)
def test_backend_kinds(backend, kind):
    assert backend_kind(backend) == kind


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"llm": "gpt"}, "Unknown llm backend 'gpt'"),
        ({"llm": "hf:"}, "names no hf target"),
        ({"llm_batch_size": 0}, "llm_batch_size=0"),
        ({"llm_negative_unit": "item"}, "Valid units: user, pair"),
        ({"llm_negative_budget": -1}, "llm_negative_budget=-1"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ConfigurationError, match=message):
        LLMSettings.from_config(settings)


def test_prompts_render_with_answer_start():
    prompts = read_prompts(DEFAULT_PROMPT_DIR)
    prompt = prompts["item_profile"].render(item="Toy Story (1995). Categories: Animation.")
    assert prompt.messages[0]["role"] == "system" and prompt.messages[-1]["role"] == "user"
    assert "Toy Story (1995)" in prompt.messages[-1]["content"]
    assert prompt.answer_start == '{"summary": "'


def test_edited_prompt_changes_the_hash_and_bad_files_are_refused(tmp_path):
    folder = tmp_path / "prompts"
    shutil.copytree(DEFAULT_PROMPT_DIR, folder)
    before = prompt_hash(folder, PROFILE_PROMPTS)
    path = folder / "item_profile.txt"
    path.write_text(path.read_text().replace("short, factual", "short"))
    assert prompt_hash(folder, PROFILE_PROMPTS) != before
    path.write_text(path.read_text().replace("$item", "$title"))
    with pytest.raises(ConfigurationError, match=r"\$item are not used"):
        PromptTemplate.read(folder, "item_profile")
    path.write_text(path.read_text().replace("$title", "$item $year"))
    with pytest.raises(ConfigurationError, match=r"unknown placeholder 'year'.*Valid placeholders: \$item"):
        PromptTemplate.read(folder, "item_profile").render(item="x")
    with pytest.raises(ConfigurationError, match="negative.txt does not exist"):
        PromptTemplate.read(tmp_path, "negative")
