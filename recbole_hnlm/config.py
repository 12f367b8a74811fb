"""RecBole's Config with the plugin's defaults layered under the user's settings.

Precedence, lowest first (later wins):
1. RecBole's internal defaults (its overall, model and dataset YAML files);
2. ``properties/overall.yaml``, ``properties/model/<model>.yaml``, ``properties/dataset/<dataset>.yaml``;
3. ``<data_path>/<dataset>/<dataset>.yaml``, written by the dataset importers;
4. ``properties/sampler/<neg_sampler>.yaml``;
5. the user's config files, then ``config_dict``, then command-line ``--key=value`` arguments.

HNLMRec wraps a backbone model: ``--model=HNLMRec --backbone=LightGCN`` and ``--model=LightGCN --neg_sampler=hnlm``
give the same config (model HNLMRec, backbone LightGCN, sampler hnlm), with the backbone's defaults where a plain
backbone run has them: RecBole's ``properties/model/<backbone>.yaml`` in step 1, and the plugin's
``properties/model/<backbone>.yaml`` in step 2, under ``properties/model/HNLMRec.yaml``.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from recbole.config import Config

from recbole_hnlm import compat
from recbole_hnlm.errors import ConfigurationError, DatasetNotFoundError
from recbole_hnlm.model import MODEL_ZOO, check_model_supported, get_model
from recbole_hnlm.samplers import get_sampler_class

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROPERTIES_DIR = PROJECT_ROOT / "properties"
DEFAULT_DATA_PATH = PROJECT_ROOT / "dataset"
HNLM_MODEL = "HNLMRec"
HNLM_SAMPLER = "hnlm"


def available_datasets(data_path: str | os.PathLike) -> list[str]:
    """Dataset folders under ``data_path`` that hold RecBole atomic files named after the folder."""
    root = Path(data_path)
    if not root.is_dir():
        return []
    return sorted(
        folder.name for folder in root.iterdir() if folder.is_dir() and any(folder.glob(f"{folder.name}*.inter"))
    )


class HNLMConfig(Config):
    """A RecBole ``Config`` that knows the plugin's samplers, models, defaults and datasets.

    ``cmd_args`` takes ``--key=value`` strings explicitly; unlike RecBole's Config it never reads
    ``sys.argv``, so it behaves the same inside scripts, notebooks, tests and Ray workers.
    """

    def __init__(
        self,
        model: str | type | None = None,
        dataset: str | None = None,
        config_file_list: list[str] | None = None,
        config_dict: dict | None = None,
        cmd_args: list[str] | None = None,
    ) -> None:
        self._requested_model = model
        self._requested_dataset = dataset
        self._backbone: str | None = None
        self._cmd_args = list(cmd_args or [])
        for file in config_file_list or []:
            if not Path(file).is_file():
                raise ConfigurationError(f"Config file '{file}' does not exist. Fix: check the --config_files path.")
        super().__init__(model, dataset, config_file_list, config_dict)
        self._check_dataset_exists()
        sampler_class = get_sampler_class(self["neg_sampler"])
        sampler_class.validate_config(self)
        if 0 < self["epochs"] < self["eval_step"]:
            raise ConfigurationError(
                f"epochs={self['epochs']} is less than eval_step={self['eval_step']}: the run would never validate, "
                f"so no epoch could be chosen. Fix: --eval_step={self['epochs']} or more epochs."
            )
        if sampler_class.requires_model and self["worker"]:
            raise ConfigurationError(
                f"neg_sampler={self['neg_sampler']} scores candidates with the model being trained, which "
                f"dataloader worker processes cannot see (worker={self['worker']}). Fix: --worker=0."
            )

    def _load_config_files(self, file_list):
        try:
            return super()._load_config_files(file_list)
        except yaml.YAMLError as error:
            raise ConfigurationError(f"A config file is not valid YAML: {error}") from None

    def _load_cmd_line(self) -> dict:
        parsed: dict[str, str] = {}
        for arg in self._cmd_args:
            key, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
            if not key or not sep:
                raise ConfigurationError(
                    f"Command-line argument '{arg}' is not of the form --key=value. Fix: e.g. --epochs=5."
                )
            if key in parsed and parsed[key] != value:
                raise ConfigurationError(f"'--{key}' is given twice with different values ({parsed[key]}, {value}).")
            parsed[key] = value
        return self._convert_config_dict(parsed)

    def _merge_external_config_dict(self) -> None:
        super()._merge_external_config_dict()
        user = self.external_config_dict
        model = self._requested_model or user.get("model")
        model_name = model if isinstance(model, str) or model is None else model.__name__
        dataset = self._requested_dataset or user.get("dataset")
        self._backbone = self._hnlm_backbone(model_name, user)
        if self._backbone:
            model_name = HNLM_MODEL
            user = {**user, "model": HNLM_MODEL, "backbone": self._backbone}
        elif getattr(MODEL_ZOO.get(model_name), "wraps_backbone", False):  # e.g. RLMRec
            self._backbone = user.get("backbone") or MODEL_ZOO[model_name].default_backbone
            user = {**user, "backbone": self._backbone}
        self._wrapper = model_name if self._backbone else None
        defaults = self._plugin_defaults(model_name, dataset, user)
        self.external_config_dict = {**defaults, **user}

    def _hnlm_backbone(self, model: str | None, user: dict) -> str | None:
        """The backbone when this run trains HNLMRec (asked by name or by ``neg_sampler=hnlm``), else None."""
        sampler = user.get("neg_sampler")
        if model == HNLM_MODEL:
            if sampler not in (None, HNLM_SAMPLER):
                raise ConfigurationError(
                    f"model=HNLMRec trains on the batches of neg_sampler=hnlm, not neg_sampler={sampler}. Fix: drop "
                    "--neg_sampler; the sampled part of its negatives is set by hnlm_base_negative (uniform or dns)."
                )
            backbone = user.get("backbone") or self._read_yaml(PROPERTIES_DIR / "model" / f"{HNLM_MODEL}.yaml").get(
                "backbone"
            )
        elif model and sampler == HNLM_SAMPLER:
            backbone = user.get("backbone", model)
            if backbone != model:
                raise ConfigurationError(
                    f"--model={model} --neg_sampler=hnlm trains HNLMRec around {model}, but backbone={backbone} "
                    f"names another model. Fix: drop --backbone, or pass --model=HNLMRec --backbone={backbone}."
                )
        else:
            return None
        if not isinstance(backbone, str) or not backbone or backbone == HNLM_MODEL:
            raise ConfigurationError(
                f"backbone={backbone!r} is invalid: HNLMRec needs a model to wrap. Fix: e.g. --backbone=LightGCN."
            )
        return backbone

    def _plugin_defaults(self, model: str | None, dataset: str | None, user: dict) -> dict:
        defaults = {"data_path": str(DEFAULT_DATA_PATH)}
        files = [PROPERTIES_DIR / "overall.yaml"]
        if self._backbone:
            files.append(PROPERTIES_DIR / "model" / f"{self._backbone}.yaml")
        if model:
            files.append(PROPERTIES_DIR / "model" / f"{model}.yaml")
        if dataset:
            files.append(PROPERTIES_DIR / "dataset" / f"{dataset}.yaml")
            data_path = user.get("data_path", defaults["data_path"])
            files.append(Path(data_path) / dataset / f"{dataset}.yaml")
        for file in files:
            defaults.update(self._read_yaml(file))
        sampler = user.get("neg_sampler", defaults.get("neg_sampler"))
        defaults.update(self._read_yaml(PROPERTIES_DIR / "sampler" / f"{sampler}.yaml"))
        if dataset:  # a sampler's settings on one dataset, e.g. the DENS code's candidate count on its splits
            defaults.update(self._read_yaml(PROPERTIES_DIR / "dataset" / dataset / f"{sampler}.yaml"))
        return defaults

    def _read_yaml(self, file: Path) -> dict:
        if not file.is_file():
            return {}
        try:
            with open(file, encoding="utf-8") as handle:
                return yaml.load(handle.read(), Loader=self.yaml_loader) or {}
        except yaml.YAMLError as error:
            raise ConfigurationError(f"'{file}' is not valid YAML: {error}") from None

    def _get_model_and_dataset(self, model, dataset):
        if self._backbone:
            check_model_supported(get_model(self._backbone))
            model = self._wrapper
        if model is None:
            model = self.external_config_dict.get("model")
        if model is None:
            raise ConfigurationError("No model given. Fix: pass --model=<name>, e.g. --model=LightGCN.")
        model_class = get_model(model) if isinstance(model, str) else model
        check_model_supported(model_class)
        if dataset is None:
            dataset = self.external_config_dict.get("dataset")
        if dataset is None:
            raise ConfigurationError("No dataset given. Fix: pass --dataset=<name>, e.g. --dataset=ml-100k.")
        return model_class.__name__, model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset) -> None:
        if not self._backbone:
            super()._load_internal_config_dict(model, model_class, dataset)
            return
        # RecBole reads only properties/model/<model>.yaml; HNLMRec has none, its backbone's is the one it needs.
        super()._load_internal_config_dict(self._backbone, get_model(self._backbone), dataset)
        self.internal_config_dict["MODEL_TYPE"] = model_class.type

    def _set_default_parameters(self) -> None:
        raw_data_path = self.final_config_dict["data_path"]
        super()._set_default_parameters()
        self.final_config_dict["data_path"] = compat.recbole_data_path(raw_data_path, self.dataset)
        self.final_config_dict["raw_data_path"] = raw_data_path

    def _set_train_neg_sample_args(self) -> None:
        # The plugin's keys decide; RecBole's train_neg_sample_args is derived from them so that its
        # dataloader repeats each positive sample_num times and its Trainer hands model-scored samplers the model.
        if "train_neg_sample_args" in self.external_config_dict:
            raise ConfigurationError(
                "train_neg_sample_args is derived by recbole-hnlm from neg_sampler, sample_num and candidate_num. "
                "Fix: set those instead, e.g. --neg_sampler=dns --sample_num=1 --candidate_num=16."
            )
        sampler_class = get_sampler_class(self.final_config_dict.get("neg_sampler"))
        sample_num = self.final_config_dict.get("sample_num")
        if not isinstance(sample_num, int) or sample_num < 1:
            raise ConfigurationError(f"sample_num={sample_num!r} is invalid: it must be an integer >= 1.")
        self.final_config_dict["train_neg_sample_args"] = {
            "distribution": "uniform",
            "sample_num": sample_num,
            "alpha": 1.0,
            "dynamic": sampler_class.requires_model,
            "candidate_num": self.final_config_dict.get("candidate_num", 0) if sampler_class.requires_model else 0,
        }

    def _check_dataset_exists(self) -> None:
        folder = Path(self["data_path"])
        name = self["dataset"]
        benchmark = self["benchmark_filename"]
        expected = [f"{name}.{part}.inter" for part in benchmark] if benchmark else [f"{name}.inter"]
        missing = [file for file in expected if not (folder / file).is_file()]
        if missing:
            raw = self["raw_data_path"]
            raise DatasetNotFoundError(
                f"Dataset '{name}' not found: {', '.join(str(folder / file) for file in missing)} does not exist. "
                f"Datasets under {raw}: {', '.join(available_datasets(raw)) or 'none'}. Fix: pick one of those, "
                "set --data_path, or import your data with `python -m recbole_hnlm.data.import_dataset`."
            )
