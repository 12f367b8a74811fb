"""An imported pre-split dataset is trained and evaluated on exactly its files' rows."""

from __future__ import annotations

import pytest

from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.data.preparation import load_dataset, prepare_data, prepare_refit_data
from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.paths import default_data_path
from recbole_hnlm.quick_start import load_data_and_model, run
from recbole_hnlm.trainer import create_trainer

DEFAULT_DATA_PATH = default_data_path()


def file_pairs(name: str, part: str) -> list[tuple[str, str]]:
    lines = (DEFAULT_DATA_PATH / name / f"{name}.{part}.inter").read_text().splitlines()[1:]
    return [tuple(line.split("\t")) for line in lines if line]


@pytest.mark.parametrize("name", ["toy-dens", "amazon-office"])
def test_dataloaders_hold_exactly_the_imported_split(name):
    config = HNLMConfig("BPR", name, config_dict={"state": "ERROR"})
    dataset = load_dataset(config)
    loaders = prepare_data(config, dataset)
    for part, loader in zip(("train", "valid", "test"), loaders, strict=True):
        inter = loader._dataset.inter_feat
        users = dataset.id2token(dataset.uid_field, inter[dataset.uid_field].numpy())
        items = dataset.id2token(dataset.iid_field, inter[dataset.iid_field].numpy())
        assert list(zip(users, items, strict=True)) == file_pairs(name, part)


def test_refit_trains_on_train_and_valid_and_never_draws_valid_items_as_negatives():
    config = HNLMConfig("BPR", "toy-dens", config_dict={"state": "ERROR", "refit_with_valid": True})
    dataset = load_dataset(config)
    loaders = prepare_data(config, dataset)
    refit = prepare_refit_data(config, dataset, *loaders)
    inter = refit._dataset.inter_feat
    users = dataset.id2token(dataset.uid_field, inter[dataset.uid_field].numpy())
    items = dataset.id2token(dataset.iid_field, inter[dataset.iid_field].numpy())
    assert list(zip(users, items, strict=True)) == file_pairs("toy-dens", "train") + file_pairs("toy-dens", "valid")
    valid = loaders[1]._dataset.inter_feat
    valid_users, valid_items = valid[dataset.uid_field].numpy(), valid[dataset.iid_field].numpy()
    assert refit.negative_sampler.positives.contains(valid_users, valid_items).all()
    assert not loaders[0].negative_sampler.positives.contains(valid_users, valid_items).any()
    negatives = refit.negative_sampler.draw_uniform(valid_users, 20)
    assert not refit.negative_sampler.positives.contains(valid_users[None, :], negatives).any()


def test_refit_run_tests_a_model_trained_for_the_chosen_epochs_and_reloads_with_its_graph(run_settings):
    settings = {**run_settings, "epochs": 3, "eval_step": 1, "refit_with_valid": True, "torch_threads": 1}
    shown = []
    result = run("LightGCN", "toy-dens", config_dict=settings, progress=shown.append)
    selected = run("LightGCN", "toy-dens", config_dict={**settings, "refit_with_valid": False})
    assert result["refit_epochs"] == result["best_epoch"] + 1
    # Progress: each epoch once trained and once validated, then the refit's epochs, which have no validation.
    refit_epochs = result["refit_epochs"]
    assert len(shown) == 6 + refit_epochs and shown[:2] == ["1/3 epochs", shown[1]]
    assert shown[5].startswith("3/3 epochs, valid recall@20 ")
    assert shown[5].endswith(f", best {result['best_valid_score']:.4f} after {refit_epochs}")
    assert shown[6:] == [f"refit {epoch}/{refit_epochs} epochs" for epoch in range(1, refit_epochs + 1)]
    # The selection run is the same run either way; the refit model is another one, trained on more data.
    assert result["selected_model_test_result"] == selected["test_result"]
    assert result["test_result"] != selected["test_result"]
    # Reloaded, the refit model propagates over the train + validation graph it trained on, and tests the same.
    config, model, dataset, train_data, valid_data, test_data = load_data_and_model(result["checkpoint"])
    assert len(train_data._dataset) == len(file_pairs("toy-dens", "train")) + len(file_pairs("toy-dens", "valid"))
    reloaded = create_trainer(config, model).evaluate(test_data, load_best_model=False)
    assert {key: float(value) for key, value in reloaded.items()} == result["test_result"]


def test_refit_is_refused_for_the_semantic_sampler_before_any_work():
    with pytest.raises(ConfigurationError, match="--refit_with_valid=False"):
        HNLMConfig("BPR", "ml-100k", config_dict={"neg_sampler": "hnlm", "refit_with_valid": True})


def test_a_run_that_would_never_validate_is_refused():
    # beauty-dens validates every 5 epochs (properties/dataset/beauty-dens.yaml)
    with pytest.raises(ConfigurationError, match="--eval_step=3"):
        HNLMConfig("LightGCN", "beauty-dens", config_dict={"epochs": 3})
