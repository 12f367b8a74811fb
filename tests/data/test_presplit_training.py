"""An imported pre-split dataset is trained and evaluated on exactly its files' rows."""

from __future__ import annotations

import pytest

from recbole_hnlm.config import DEFAULT_DATA_PATH, HNLMConfig
from recbole_hnlm.data.preparation import load_dataset, prepare_data


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
