"""Search space files: the shipped ones fit their samplers; bad names and ranges are refused with the fix."""

from __future__ import annotations

import pytest

from recbole_hnlm.config import HNLMConfig, read_defaults
from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.model import MODEL_ZOO, wraps_backbone
from recbole_hnlm.paths import PROPERTIES_DIR
from recbole_hnlm.samplers import SAMPLER_REGISTRY
from recbole_hnlm.tuning.space import SearchSpace, shipped_spaces

SPACES = PROPERTIES_DIR / "tune"


def space_file(tmp_path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("sampler", sorted(SAMPLER_REGISTRY))
def test_every_sampler_ships_a_space_of_its_own_knobs(sampler):
    space = SearchSpace.from_yaml(SPACES / f"{sampler}.yaml")
    config = HNLMConfig("LightGCN", "ml-100k", config_dict={"neg_sampler": sampler, "state": "ERROR"})
    space.check_names(config)
    assert "learning_rate" in space.names
    own_defaults = SAMPLER_REGISTRY[sampler].defaults_files()[-1:]  # the sampler's own file comes last
    knobs = {key for file in own_defaults for key in read_defaults(file)} - {"neg_sampler"}
    assert knobs & set(space.names) or not knobs, f"{sampler}'s space searches none of its knobs {knobs}"


def space_config(name: str) -> HNLMConfig:
    """The config a shipped space is meant for: its sampler's on LightGCN, its model's, or the filter's over dns."""
    quiet = {"state": "ERROR"}
    if name in SAMPLER_REGISTRY:
        return HNLMConfig("LightGCN", "ml-100k", config_dict={**quiet, "neg_sampler": name})
    if name in MODEL_ZOO:
        backbone = {"backbone": "LightGCN"} if wraps_backbone(MODEL_ZOO[name]) else {}
        return HNLMConfig(name, "ml-100k", config_dict={**quiet, **backbone, "neg_sampler": "uniform"})
    assert name == "text_filter", f"properties/tune/{name}.yaml is a space for no sampler or model"
    return HNLMConfig("LightGCN", "ml-100k", config_dict={**quiet, "neg_sampler": "dns"})


@pytest.mark.parametrize("name", sorted(shipped_spaces()))
def test_every_shipped_space_names_only_known_settings_and_its_command_resolves(name):
    space = SearchSpace.from_yaml(name)  # the bare name, as --tune=<name> gives it
    space.check_names(space_config(name))
    comment = (SPACES / f"{name}.yaml").read_text().splitlines()
    commands = [line for line in comment if line.startswith("# python run_recbole_hnlm.py")]
    assert commands and all(f"--tune={name} " in f"{line} " for line in commands), commands


def test_model_spaces_resolve_by_name_and_search_the_models_knobs():
    assert SearchSpace.from_yaml("rlmrec").source == str(SPACES / "RLMRec.yaml")  # any case
    assert {"rlmrec_kd_weight", "rlmrec_kd_temperature"} <= set(SearchSpace.from_yaml("RLMRec").names)
    assert {"alpharec_temperature", "n_layers"} <= set(SearchSpace.from_yaml("AlphaRec").names)
    bases = next(p for p in SearchSpace.from_yaml("hnlm").parameters if p.name == "hnlm_base_negative").values
    assert set(bases) == set(SAMPLER_REGISTRY) - {"hnlm"}
    with pytest.raises(ConfigurationError, match="no space of that name ships.*AlphaRec.*Fix"):
        SearchSpace.from_yaml("RLMRecc")
    with pytest.raises(ConfigurationError, match="'rlmrec_kd_weight'.*of AlphaRec: .*alpharec_temperature"):
        SearchSpace.from_yaml("RLMRec").check_names(space_config("AlphaRec"))


def test_a_space_file_becomes_ray_domains(tmp_path):
    tune = pytest.importorskip("ray.tune")

    path = space_file(
        tmp_path,
        "learning_rate: {loguniform: [1e-4, 1e-2]}\nahns_alpha: {uniform: [0.1, 2.0]}\n"
        "candidate_num: {choice: [8, 16]}\nembedding_size: {randint: [32, 65]}\n",
    )
    space = SearchSpace.from_yaml(path).to_ray()
    assert isinstance(space["learning_rate"], tune.search.sample.Float) and space["learning_rate"].lower == 1e-4
    assert space["candidate_num"].categories == [8, 16]
    assert (space["embedding_size"].lower, space["embedding_size"].upper) == (32, 65)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("learning_rate: {uniform: [0.01, 0.001]}", "'learning_rate' has an empty range {uniform: [0.01, 0.001]}"),
        ("candidate_num: {randint: [8, 8]}", "empty range {randint: [8, 8]}: low must be below high. [low, high)"),
        ("candidate_num: {choice: []}", "'candidate_num' has an empty choice list"),
        ("learning_rate: {normal: [0, 1]}", "unknown distribution 'normal'. Valid: choice, uniform, loguniform"),
        ("learning_rate: {loguniform: [0, 0.1]}", "loguniform needs low > 0"),
        ("learning_rate: {uniform: [0.1]}", "needs {uniform: [low, high]}"),
        ("learning_rate: 0.01", "must be one distribution"),
        ("neg_sampler: {choice: [dns, ahns]}", "varies neg_sampler, which a search holds fixed"),
        ("[1, 2]", "must map setting names to distributions"),
        ("learning_rate: {uniform: [0.1, 0.2]", "is not valid YAML"),
    ],
)
def test_malformed_spaces_are_refused(text, message, tmp_path):
    with pytest.raises(ConfigurationError) as caught:
        SearchSpace.from_yaml(space_file(tmp_path, text))
    assert message in str(caught.value)


def test_unknown_parameters_are_refused_with_the_close_names_and_the_samplers_knobs(tmp_path):
    config = HNLMConfig("LightGCN", "ml-100k", config_dict={"neg_sampler": "ahns", "state": "ERROR"})
    space = SearchSpace.from_yaml(space_file(tmp_path, "ahns_alfa: {uniform: [0.1, 2.0]}"))
    with pytest.raises(ConfigurationError) as caught:
        space.check_names(config)
    message = str(caught.value)
    assert "unknown parameter(s) 'ahns_alfa' (did you mean ahns_alpha" in message
    assert "LightGCN with neg_sampler=ahns on ml-100k" in message
    assert "The knobs of ahns: ahns_alpha, ahns_beta, ahns_p, ahns_similarity, candidate_num" in message

    dns = HNLMConfig("BPR", "ml-100k", config_dict={"neg_sampler": "dns", "state": "ERROR"})
    with pytest.raises(ConfigurationError, match="'ahns_beta'.*properties/tune/dns.yaml"):
        SearchSpace.from_yaml(SPACES / "ahns.yaml").check_names(dns)  # another sampler's space
    with pytest.raises(ConfigurationError, match="'n_layers'"):
        SearchSpace.from_yaml(space_file(tmp_path, "n_layers: {choice: [1, 2]}")).check_names(dns)  # BPR has none
