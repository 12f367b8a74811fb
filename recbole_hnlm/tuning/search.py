"""Ray Tune searches over a model's and sampler's settings, with ASHA early stopping on the validation metric.

Each trial is one ``quick_start.run``: it reports the validation metrics after every validation (RecBole's
trainer callback), so that ASHA can stop weak trials early, and a trial that runs to its end reports its best
validation score and the test metrics of that checkpoint once more. The best trial is chosen on validation
only; its config and test metrics go to ``results/tune/<name>/best.json`` beside Ray's own experiment folder.

Ray is local by default (started for the search, with the machine's CPUs and GPUs; trials ask for a GPU only
where the cluster has one); ``ray_address`` attaches to a running cluster instead. Trials read the dataset
from an absolute ``data_path`` (and open the LLM cache at an absolute ``llm_cache_dir``, so that they share the one
that a first run built) and build their config from explicit arguments (``HNLMConfig`` never reads
``sys.argv``), so they run the same on any node that has recbole-hnlm installed and the dataset at that path.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from importlib.metadata import version
from logging import getLogger
from pathlib import Path
from time import strftime

from recbole_hnlm.compat import ray_trial_gpu_id
from recbole_hnlm.config import HNLMConfig
from recbole_hnlm.errors import ClusterUnreachableError, ConfigurationError
from recbole_hnlm.io import write_json_atomic
from recbole_hnlm.llm.settings import llm_defaults
from recbole_hnlm.quick_start import run
from recbole_hnlm.ray_cluster import check_ray_address
from recbole_hnlm.tuning.space import SearchSpace, resolve_space_file

QUIET = {"state": "ERROR", "show_progress": False}


@dataclass
class SearchSettings:
    """How a search runs (not what a trial trains: that is the run's config)."""

    num_samples: int = 8
    grace_period: int = 1  # validations a trial gets before ASHA may stop it
    reduction_factor: float = 3  # ASHA keeps the best 1/reduction_factor at each rung
    cpus_per_trial: float = 1
    gpus_per_trial: float | None = None  # None: 1 where the cluster has a GPU, else 0
    num_cpus: int | None = None  # a local Ray's CPUs; None: all of the machine's
    ray_address: str | None = None  # None: start a local Ray for the search
    connect_timeout_s: float = 10
    name: str | None = None
    out: str | None = None  # default: results/tune/<name>
    verbose: bool = False

    def check(self) -> None:
        """Refuse settings that cannot run."""
        if self.num_samples < 1:
            raise ConfigurationError(f"--num_samples={self.num_samples} runs no trial. Fix: e.g. --num_samples=8.")
        if self.grace_period < 1 or self.reduction_factor <= 1:
            raise ConfigurationError(
                f"ASHA needs --grace_period >= 1 and --reduction_factor > 1 (got {self.grace_period}, "
                f"{self.reduction_factor})."
            )
        if self.cpus_per_trial <= 0:
            raise ConfigurationError(f"--cpus_per_trial={self.cpus_per_trial} must be > 0.")
        if self.ray_address and self.num_cpus:
            raise ConfigurationError("--num_cpus sizes a local Ray; an existing cluster (--ray_address) has its own.")


# Settings naming a folder, which a trial gets as an absolute path: Ray runs each trial in its own folder, where a
# relative llm_cache_dir would make every trial build (or, for a fine-tuned encoder, fail to find) its own LLM cache.
TRIAL_PATHS = ("data_path", "llm_cache_dir")


def trial_base(
    model: str, dataset: str, base_config, config_file_list: list[str], cmd_args: list[str], threads: int
) -> dict:
    """What every trial starts from: the model, dataset, config files and the user's ``--key=value`` list, with the
    ``TRIAL_PATHS`` resolved from the driver's working directory (``base_config``'s values) and dropped from the list.
    """
    # A run that does not use the LLM side has no llm_cache_dir, but a trial may switch it on (text_filter: user).
    cache_dir = base_config["llm_cache_dir"] or llm_defaults()["llm_cache_dir"]
    paths = {
        "data_path": str(Path(base_config["raw_data_path"]).resolve()),
        "llm_cache_dir": str(Path(cache_dir).resolve()),
    }
    return {
        "model": model,  # as given: HNLMConfig turns --model=LightGCN --neg_sampler=hnlm into HNLMRec around it
        "dataset": dataset,
        "config_file_list": config_file_list or None,
        "config_dict": {**QUIET, "results_dir": None, **paths, "torch_threads": threads},
        "cmd_args": [arg for arg in cmd_args if arg[2:].partition("=")[0] not in TRIAL_PATHS],
    }


def _train_trial(trial_config: dict, base: dict) -> None:
    """One trial: a full run that reports to Ray after each validation and, at its end, its test metrics."""
    from ray.air import session

    settings = {**base["config_dict"], **trial_config, "gpu_id": ray_trial_gpu_id()}
    settings.setdefault("checkpoint_dir", os.path.join(session.get_trial_dir(), "checkpoints"))

    def report_epoch(epoch_idx: int, valid_result: dict[str, float]) -> None:
        session.report({**valid_result, "epoch": epoch_idx})

    result = run(
        base["model"],
        base["dataset"],
        base["config_file_list"],
        settings,
        base["cmd_args"],
        epoch_callback=report_epoch,
    )
    session.report(
        {
            **result["valid_result"],
            "epoch": result["best_epoch"],
            "best_epoch": result["best_epoch"],
            "test": result["test_result"],
            "config_hash": result["config_hash"],
            "checkpoint": result["checkpoint"],
        }
    )


def _start_ray(settings: SearchSettings) -> bool:
    """Attach to ``settings.ray_address`` or start a local Ray; True where this call started it."""
    import ray

    if ray.is_initialized():
        return False
    if settings.ray_address:
        try:
            ray.init(address=settings.ray_address, log_to_driver=settings.verbose)
        except ConnectionError as error:
            raise ClusterUnreachableError(
                f"Could not attach to the Ray cluster at {settings.ray_address}: {error}"
            ) from None
    else:
        ray.init(num_cpus=settings.num_cpus, include_dashboard=False, log_to_driver=settings.verbose)
    return True


def _trial_summary(result, metric: str) -> dict:
    metrics = result.metrics or {}
    finished = "test" in metrics
    return {
        "config": result.config,
        "status": "error" if result.error else ("finished" if finished else "stopped early"),
        "valid_score": metrics.get(metric),
        # A finished trial's last report is its closing one, not a validation.
        "validations": (metrics.get("training_iteration") or 0) - finished,
        "test_result": metrics.get("test"),
        "checkpoint": metrics.get("checkpoint"),
        "error": str(result.error).strip().splitlines()[-1] if result.error else None,
    }


def run_search(
    model: str,
    dataset: str,
    space_file: str,
    config_file_list: list[str] | None = None,
    cmd_args: list[str] | None = None,
    settings: SearchSettings | None = None,
) -> dict:
    """Search ``space_file`` for ``model`` on ``dataset``; return (and save as best.json) the best trial."""
    settings = settings or SearchSettings()
    settings.check()
    cmd_args = list(cmd_args or [])
    config_file_list = [str(Path(file).resolve()) for file in config_file_list or []]
    space = SearchSpace.from_yaml(space_file)
    base_config = HNLMConfig(model, dataset, config_file_list, dict(QUIET), cmd_args)
    space.check_names(base_config)
    fixed = [arg.partition("=")[0] for arg in cmd_args if arg[2:].partition("=")[0] in space.names]
    if fixed:
        raise ConfigurationError(
            f"{', '.join(fixed)} is given on the command line and searched in {space_file}. Fix: drop one of them."
        )
    if settings.ray_address:
        check_ray_address(settings.ray_address, settings.connect_timeout_s)
    validations = base_config["epochs"] // base_config["eval_step"] if base_config["eval_step"] > 0 else 0
    if validations < settings.grace_period:
        raise ConfigurationError(
            f"epochs={base_config['epochs']} with eval_step={base_config['eval_step']} gives {validations} "
            f"validation(s), fewer than ASHA's grace period ({settings.grace_period}). Fix: raise --epochs or "
            "lower --eval_step or --grace_period."
        )
    metric = base_config["valid_metric"].lower()
    mode = "max" if base_config["valid_metric_bigger"] else "min"
    name = settings.name or f"{model}-{base_config['neg_sampler']}-{dataset}"
    out = Path(settings.out or Path("results") / "tune" / name).resolve()

    threads = base_config["torch_threads"] or max(1, int(settings.cpus_per_trial))
    base = trial_base(model, dataset, base_config, config_file_list, cmd_args, threads)
    if settings.verbose:
        base["config_dict"]["state"] = "INFO"
    started_ray = _start_ray(settings)
    try:
        best, trials, gpus = _fit(space, base, settings, metric, mode, validations, name, out, base_config["seed"])
    finally:
        if started_ray:
            import ray

            ray.shutdown()

    report = {
        "made_by": "recbole_hnlm.tuning",
        "created": strftime("%Y-%m-%dT%H:%M:%S"),
        "model": base["model"],
        "dataset": base["dataset"],
        "neg_sampler": base_config["neg_sampler"],
        "space_file": str(resolve_space_file(space_file).resolve()),
        "space": space.to_dict(),
        "cmd_args": cmd_args,
        "config_files": config_file_list,
        "metric": metric,
        "mode": mode,
        "search": {**asdict(settings), "gpus_per_trial": gpus, "scheduler": "ASHA", "max_validations": validations},
        "best_config": best["config"],
        "best_valid_score": best["valid_score"],
        "best_epoch": best["best_epoch"],
        "test_result": best["test_result"],
        "checkpoint": best["checkpoint"],
        "trials": trials,
        "ray_results": str(out / "ray" / name),
        "versions": {package: version(package) for package in ("recbole", "ray", "torch")},
    }
    report["best_file"] = str(out / "best.json")
    write_json_atomic(out / "best.json", report)
    getLogger().info(f"best of {len(trials)} trials: {best['config']} -> test {best['test_result']}")
    return report


def _fit(space, base, settings, metric, mode, validations, name, out, seed) -> tuple[dict, list[dict], float]:
    """Run the trials; the best finished one (on validation) and a summary of every trial."""
    import ray
    from ray import air, tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    gpus = settings.gpus_per_trial
    if gpus is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    trainable = tune.with_resources(
        tune.with_parameters(_train_trial, base=base), {"cpu": settings.cpus_per_trial, "gpu": gpus}
    )
    # One iteration per validation, plus the finished trial's closing report; ASHA stops a trial reaching max_t.
    scheduler = ASHAScheduler(
        max_t=validations + 1, grace_period=settings.grace_period, reduction_factor=settings.reduction_factor
    )
    tuner = tune.Tuner(
        trainable,
        param_space=space.to_ray(),
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            num_samples=settings.num_samples,
            scheduler=scheduler,
            search_alg=BasicVariantGenerator(random_state=seed),
        ),
        run_config=air.RunConfig(
            name=name,
            storage_path=str(out / "ray"),
            verbose=2 if settings.verbose else 0,
            failure_config=air.FailureConfig(max_failures=0),
        ),
    )
    results = tuner.fit()
    trials = [_trial_summary(result, metric) for result in results]
    finished = [(result, trial) for result, trial in zip(results, trials, strict=True) if trial["status"] == "finished"]
    if not finished:
        errors = [trial["error"] for trial in trials if trial["error"]]
        raise ConfigurationError(
            f"None of the {len(trials)} trials finished"
            + (f"; the first error: {errors[0]}" if errors else "")
            + f". Ray's logs: {out / 'ray' / name}."
        )
    sign = 1 if mode == "max" else -1
    best_result, best = max(finished, key=lambda pair: sign * pair[1]["valid_score"])
    return {**best, "best_epoch": best_result.metrics["best_epoch"]}, trials, gpus
