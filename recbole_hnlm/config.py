"""RecBole's Config with the plugin's defaults layered under the user's settings: the one place settings merge.

Precedence, lowest first (later wins):
1. RecBole's internal defaults (its overall, model and dataset YAML files; for a model that wraps a backbone,
   the backbone's model YAML);
2. the plugin's ``properties/overall.yaml``; the backbone's and then the model's plugin defaults
   (``model_defaults_files``, e.g. ``properties/model/<model>.yaml``); ``properties/dataset/<dataset>.yaml``;
3. ``<data_path>/<dataset>/<dataset>.yaml``, written by the dataset importers;
4. the sampler's defaults (the files its ``defaults_files`` lists, e.g. ``properties/sampler/<neg_sampler>.yaml``;
   ``hnlm`` lists the LLM side's ``llm.yaml`` and the fine-tuning chain's ``finetune.yaml`` too), then
   ``properties/dataset/<dataset>/<neg_sampler>.yaml``;
5. the user's config files, then ``config_dict``, then command-line ``--key=value`` arguments.

A sampler that trains a model of its own around ``--model`` names it in ``wrapper_model`` (``hnlm`` trains
``HNLMRec``): ``--model=LightGCN --neg_sampler=hnlm`` and ``--model=HNLMRec --backbone=LightGCN`` give the same
config. A model that wraps a backbone (``wraps_backbone``) gets the backbone's defaults under its own.

Every setting the user gives must be one of RecBole's (its overall and dataset defaults, the chosen model's), the
plugin's (any registered sampler's or model's defaults), or the chosen model's: anything else is refused with the
closest valid names. Types and ranges of the common keys are checked before any work.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from functools import cache
from pathlib import Path

import yaml
from recbole.config import Config

from recbole_hnlm.compat import recbole_data_path
from recbole_hnlm.data.single_process import check_single_process
from recbole_hnlm.errors import ConfigurationError, DatasetNotFoundError, UnknownSettingError
from recbole_hnlm.model import (
    MODEL_ZOO,
    check_model_supported,
    get_model,
    model_defaults_files,
    wraps_backbone,
)
from recbole_hnlm.paths import PROPERTIES_DIR, default_data_path
from recbole_hnlm.samplers import SAMPLER_REGISTRY, get_sampler_class

# Settings RecBole reads that no YAML of its own lists (its distributed mode, derived keys, run_recbole's arguments).
RECBOLE_UNLISTED_SETTINGS = frozenset(
    {
        "model",
        "dataset",
        "config_files",
        "nproc",
        "world_size",
        "ip",
        "port",
        "offset",
        "group_offset",
        "local_rank",
        "single_spec",
        "save_step",
        "train_neg_sample_args",
        "valid_neg_sample_args",
        "test_neg_sample_args",
        "eval_type",
        "device",
    }
)
# Settings that do not change a run's result: left out of its fingerprint.
UNHASHED_SETTINGS = frozenset(
    {"device", "gpu_id", "show_progress", "state", "results_dir", "checkpoint_dir", "torch_threads"}
)
# Settings added after benchmark runs were recorded, with the value that reproduces those runs. At that value they
# stay out of the fingerprint, so that adding a setting does not orphan the finished runs of every matrix.
LATER_SETTINGS = {
    "refit_with_valid": False,
    "ahns_similarity": "ip",
    "text_filter": "none",
    "text_filter_quantile": 0.75,
    "text_filter_threshold": None,
    "text_filter_mode": "drop",
    "text_filter_weight": 0.5,
}
# The text filter's knobs (text_filter_quantile, ...), which change nothing while text_filter is none.
FILTER_KNOB_PREFIX = "text_filter_"
# Integer settings with their least valid value.
_MIN_INTEGER = {
    "epochs": 1,
    "eval_step": 1,
    "stopping_step": 1,
    "train_batch_size": 1,
    "eval_batch_size": 1,
    "embedding_size": 1,
    "sample_num": 1,
    "worker": 0,
}
_TOPK_METRIC = re.compile(r"^([A-Za-z]+)@(\d+)$")


def available_datasets(data_path: str | os.PathLike) -> list[str]:
    """Dataset folders under ``data_path`` that hold RecBole atomic files named after the folder."""
    root = Path(data_path)
    if not root.is_dir():
        return []
    return sorted(
        folder.name for folder in root.iterdir() if folder.is_dir() and any(folder.glob(f"{folder.name}*.inter"))
    )


def config_fingerprint(config) -> str:
    """A short hash of every setting that can change a run's result."""
    items = sorted((key, repr(value)) for key, value in recorded_settings(config).items())
    return hashlib.sha256(repr(items).encode()).hexdigest()[:12]


def run_settings(config) -> dict:
    """Every setting of a run but where it ran (device, output folders, threads), for its results file."""
    return {key: value for key, value in config.final_config_dict.items() if key not in UNHASHED_SETTINGS}


def recorded_settings(config) -> dict:
    """What ``config_fingerprint`` hashes: ``run_settings`` less the later settings at their hash-keeping values, and
    less the text filter's knobs in a run without the filter (they do nothing there)."""
    settings = run_settings(config)
    filter_off = settings.get("text_filter", "none") in (None, "none")
    return {
        key: value
        for key, value in settings.items()
        if not (key in LATER_SETTINGS and value == LATER_SETTINGS[key])
        and not (filter_off and key.startswith(FILTER_KNOB_PREFIX))
    }


def read_defaults(file: Path, loader=yaml.SafeLoader) -> dict:
    """The mapping in a defaults file; a missing or malformed file is an error, never ``{}``."""
    if not file.is_file():
        raise ConfigurationError(
            f"Defaults file '{file}' is missing. Fix: reinstall recbole-hnlm (pip install .), whose package ships it."
        )
    try:
        with open(file, encoding="utf-8") as handle:
            values = yaml.load(handle.read(), Loader=loader) or {}
    except yaml.YAMLError as error:
        raise ConfigurationError(f"'{file}' is not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise ConfigurationError(f"'{file}' must hold a mapping of settings, not {type(values).__name__}.")
    return values


def plugin_setting_names() -> set[str]:
    """Every setting that a defaults file of the plugin, of a registered sampler or of a zoo model names."""
    files = [*PROPERTIES_DIR.glob("*.yaml"), *PROPERTIES_DIR.glob("dataset/**/*.yaml")]
    for sampler_class in SAMPLER_REGISTRY.values():
        files += sampler_class.defaults_files()
    for model_class in MODEL_ZOO.values():
        files += model_defaults_files(model_class)
    files += PROPERTIES_DIR.glob("model/*.yaml")
    return set(_setting_names_of(tuple(sorted({Path(file) for file in files}))))


@cache
def _setting_names_of(files: tuple[Path, ...]) -> frozenset[str]:
    """The settings those defaults files name, read once per set of files (every Config checks against them)."""
    return frozenset(key for file in files for key in read_defaults(file))


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
        self._plugin_defaults: dict = {}
        self._cmd_args = list(cmd_args or [])
        for file in config_file_list or []:
            if not Path(file).is_file():
                raise ConfigurationError(f"Config file '{file}' does not exist. Fix: check the --config_files path.")
        super().__init__(model, dataset, config_file_list, config_dict)
        self._check_dataset_exists()
        sampler_class = get_sampler_class(self["neg_sampler"])
        sampler_class.validate_config(self)
        if self["epochs"] < self["eval_step"]:
            raise ConfigurationError(
                f"epochs={self['epochs']} is less than eval_step={self['eval_step']}: the run would never validate, "
                f"so no epoch could be chosen. Fix: --eval_step={self['epochs']} or more epochs."
            )
        if sampler_class.requires_model and self["worker"]:
            raise ConfigurationError(
                f"neg_sampler={self['neg_sampler']} scores candidates with the model being trained, which "
                f"dataloader worker processes cannot see (worker={self['worker']}). Fix: --worker=0."
            )

    @property
    def user_settings(self) -> dict:
        """The settings the user gave (config files, ``config_dict``, command line), merged."""
        return {**self.file_config_dict, **self.variable_config_dict, **self.cmd_config_dict}

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
        overall = self._read(PROPERTIES_DIR / "overall.yaml")
        model_files = model_defaults_files(get_model(model_name)) if model_name else []
        model_defaults = self._read_all(model_files)
        sampler = user.get("neg_sampler", model_defaults.get("neg_sampler", overall.get("neg_sampler")))
        sampler_class = get_sampler_class(sampler)
        if sampler_class.wrapper_model and model_name and model_name != sampler_class.wrapper_model:
            if wraps_backbone(get_model(model_name)):
                raise ConfigurationError(
                    f"--neg_sampler={sampler} trains {sampler_class.wrapper_model} around --model, but {model_name} "
                    f"wraps a backbone itself. Fix: another sampler for {model_name}, or --model=<backbone> "
                    f"--neg_sampler={sampler}."
                )
            backbone = user.get("backbone", model_name)
            if backbone != model_name:
                raise ConfigurationError(
                    f"--model={model_name} --neg_sampler={sampler} trains {sampler_class.wrapper_model} around "
                    f"{model_name}, but backbone={backbone} names another model. Fix: drop --backbone, or pass "
                    f"--model={sampler_class.wrapper_model} --backbone={backbone}."
                )
            user = {**user, "backbone": backbone}
            model_name = sampler_class.wrapper_model
            model_files = model_defaults_files(get_model(model_name))
            model_defaults = self._read_all(model_files)
        model_class = get_model(model_name) if model_name else None
        files = [PROPERTIES_DIR / "overall.yaml"]
        if model_class is not None and wraps_backbone(model_class):
            self._backbone = self._wrapped_backbone(model_class, sampler, user, model_defaults)
            user = {**user, "model": model_name, "backbone": self._backbone}
            files += model_defaults_files(get_model(self._backbone))
        files += model_files
        defaults = {"data_path": str(default_data_path())}
        if dataset:
            dataset_file = PROPERTIES_DIR / "dataset" / f"{dataset}.yaml"
            data_path = user.get("data_path", defaults["data_path"])
            files += [file for file in (dataset_file, Path(data_path) / dataset / f"{dataset}.yaml") if file.is_file()]
        files += sampler_class.defaults_files()
        if dataset:
            # A model's settings chosen on one dataset (e.g. RLMRec's by a Tune search), then a sampler's (e.g. the
            # DENS code's candidate count on its splits): properties/dataset/<dataset>/<Model or sampler>.yaml.
            chosen = [PROPERTIES_DIR / "dataset" / dataset / f"{name}.yaml" for name in (model_name, sampler) if name]
            files += [file for file in chosen if file.is_file()]
        defaults.update(self._read_all(files))
        self._plugin_defaults = defaults
        self.external_config_dict = {**defaults, **user}

    def _wrapped_backbone(self, model_class: type, sampler: str, user: dict, model_defaults: dict) -> str:
        """The backbone of a wrapping model, checked: a model to wrap, and the sampler the wrapper needs."""
        name = model_class.__name__
        required = getattr(model_class, "required_sampler", None)
        if required and sampler != required:
            raise ConfigurationError(
                f"model={name} trains on the batches of neg_sampler={required}, not neg_sampler={sampler}. Fix: drop "
                f"--neg_sampler (or pass --model=<backbone> --neg_sampler={required})."
            )
        backbone = (
            user.get("backbone") or model_defaults.get("backbone") or getattr(model_class, "default_backbone", None)
        )
        if not isinstance(backbone, str) or not backbone or wraps_backbone(get_model(backbone)):
            raise ConfigurationError(
                f"backbone={backbone!r} is invalid: {name} needs a model to wrap. Fix: e.g. --backbone=LightGCN."
            )
        return backbone

    def _read(self, file: Path) -> dict:
        return read_defaults(file, self.yaml_loader)

    def _read_all(self, files: list[Path]) -> dict:
        merged: dict = {}
        for file in files:
            merged.update(self._read(Path(file)))
        return merged

    def _get_model_and_dataset(self, model, dataset):
        if self._backbone:
            check_model_supported(get_model(self._backbone))
            model = self.external_config_dict["model"]
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
        else:
            # RecBole reads only its properties/model/<model>.yaml; a wrapper has none, its backbone's is the one.
            super()._load_internal_config_dict(self._backbone, get_model(self._backbone), dataset)
            self.internal_config_dict["MODEL_TYPE"] = model_class.type
        self._check_user_settings()

    def _check_user_settings(self) -> None:
        """Refuse settings nobody reads, and values of the wrong type, before any work."""
        known = set(self.internal_config_dict) | set(self._plugin_defaults)
        known |= RECBOLE_UNLISTED_SETTINGS | plugin_setting_names()
        for key in self.user_settings:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
                hint = f"did you mean {' or '.join(close)}? " if close else ""
                raise UnknownSettingError(
                    f"'{key}' is not a setting of RecBole, of recbole-hnlm, or of the chosen model and sampler; "
                    f"{hint}Fix: correct the name (settings are case-sensitive) or drop it.",
                    key,
                )
        defaults = {**self.internal_config_dict, **self._plugin_defaults}
        for key, value in self.user_settings.items():
            _check_type(key, value, defaults.get(key))

    def _set_default_parameters(self) -> None:
        _check_ranges(self.final_config_dict)
        raw_data_path = self.final_config_dict["data_path"]
        super()._set_default_parameters()
        self.final_config_dict["data_path"] = recbole_data_path(raw_data_path, self.dataset)
        self.final_config_dict["raw_data_path"] = raw_data_path

    def _init_device(self) -> None:
        check_single_process(self.final_config_dict)  # before RecBole joins an NCCL process group
        super()._init_device()

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


def _check_type(key: str, value, default) -> None:
    """A value of the same kind as its default: an integer for an integer, a number for a float, a bool for a bool."""
    if default is None or value is None:
        return
    example = f"e.g. --{key}={default}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigurationError(f"{key}={value!r} is invalid: it must be True or False. Fix: {example}.")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigurationError(f"{key}={value!r} is invalid: it must be an integer. Fix: {example}.")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigurationError(f"{key}={value!r} is invalid: it must be a number. Fix: {example}.")


def _check_ranges(settings: dict) -> None:
    """Ranges of the keys every run reads, and a validation metric that the evaluation computes."""
    for key, least in _MIN_INTEGER.items():
        value = settings.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigurationError(f"{key}={value!r} is invalid: it must be an integer >= {least}. Fix: --{key}=<n>.")
    if not isinstance(settings.get("seed"), int) or isinstance(settings.get("seed"), bool):
        raise ConfigurationError(f"seed={settings.get('seed')!r} is invalid: it must be an integer. Fix: --seed=2020.")
    rate = settings.get("learning_rate")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
        raise ConfigurationError(
            f"learning_rate={rate!r} is invalid: it must be a number > 0. Fix: --learning_rate=0.001."
        )
    topk = settings.get("topk")
    ks = [topk] if isinstance(topk, int) and not isinstance(topk, bool) else topk
    if not isinstance(ks, list) or not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ConfigurationError(f"topk={topk!r} is invalid: it must be a list of integers >= 1. Fix: --topk=[10,20].")
    metric = _TOPK_METRIC.match(str(settings.get("valid_metric", "")))
    if metric:
        name, k = metric.group(1).lower(), int(metric.group(2))
        metrics = settings.get("metrics")
        metrics = [metrics] if isinstance(metrics, str) else metrics or []
        if name not in {str(each).lower() for each in metrics}:
            raise ConfigurationError(
                f"valid_metric={settings['valid_metric']} is not computed: metrics={metrics} has no {metric.group(1)}. "
                f"Fix: add it to --metrics, or pick a valid_metric of those."
            )
        if k not in ks:
            raise ConfigurationError(
                f"valid_metric={settings['valid_metric']} needs k={k} in topk={topk}. Fix: --topk={sorted({*ks, k})}."
            )
