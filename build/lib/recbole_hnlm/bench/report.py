"""The benchmark's Markdown table (mean ± std, best in bold, a paired test against uniform), time split and plots."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from recbole.evaluator.register import smaller_metrics  # noqa: E402
from scipy.stats import ttest_rel  # noqa: E402

BASELINE = "uniform"
SIGNIFICANCE_LEVEL = 0.05
MARK = "†"
TIME_PHASES = (
    ("load_seconds", "data loading (read, split, dataloaders)"),
    ("sampling_seconds", "negative sampling (inside training epochs)"),
    ("train_seconds", "training (forward, backward, optimiser)"),
    ("eval_seconds", "evaluation (validation after epochs, then test)"),
)


def _frame(rows: list[dict]) -> pd.DataFrame:
    """The finished runs, numbers parsed."""
    frame = pd.DataFrame([row for row in rows if row.get("status") == "ok"])
    if frame.empty:
        return frame
    for column in frame.columns:
        if column not in ("model", "sampler", "dataset", "config_hash", "status", "error"):
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """The test metric columns (name@k), in runs.csv's order."""
    return [column for column in frame.columns if "@" in column]


def _bigger_is_better(metric: str) -> bool:
    return metric.split("@")[0] not in smaller_metrics


def paired_p_values(frame: pd.DataFrame, metric: str) -> dict[tuple[str, str, str], float | None]:
    """Two-sided paired t-test p per (dataset, model, sampler) against uniform on the same seeds; None if < 2."""
    p_values: dict[tuple[str, str, str], float | None] = {}
    for (dataset, model), group in frame.groupby(["dataset", "model"], sort=False):
        baseline = group[group["sampler"] == BASELINE].set_index("seed")[metric]
        for sampler, runs in group[group["sampler"] != BASELINE].groupby("sampler", sort=False):
            paired = runs.set_index("seed")[metric].to_frame("sampler").join(baseline.rename("baseline"), how="inner")
            p_value = None
            if len(paired) >= 2:
                p_value = float(ttest_rel(paired["sampler"], paired["baseline"]).pvalue)
            # Identical differences on every seed leave the test undefined (nan).
            p_values[dataset, model, sampler] = None if p_value is None or math.isnan(p_value) else p_value
    return p_values


def _summary(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    grouped = frame.groupby(["dataset", "model", "sampler"], sort=False)[columns]
    summary = grouped.mean().join(grouped.std(ddof=1), rsuffix=" std")
    summary["seeds"] = grouped.size()
    return summary


def _cell(mean: float, std: float, decimals: int) -> str:
    if math.isnan(mean):
        return ""
    return f"{mean:.{decimals}f}" if math.isnan(std) else f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def markdown_table(frame: pd.DataFrame, headline: str) -> str:
    """One table per dataset: mean ± std over seeds per (model, sampler), the best per column and model in bold."""
    metrics = metric_columns(frame)
    columns = [*metrics, "seconds_per_epoch"]
    summary = _summary(frame, columns)
    tests = {metric: paired_p_values(frame, metric) for metric in metrics}
    seeds = frame.groupby("dataset")["seed"].nunique()
    lines = []
    for dataset, per_dataset in summary.groupby(level="dataset", sort=False):
        lines += [
            f"### {dataset}",
            "",
            f"| model | sampler | seeds | {' | '.join(metrics)} | s/epoch | p vs {BASELINE} ({headline}) |",
            f"|---|---|---:|{'---:|' * len(columns)}---:|",
        ]
        for model, block in per_dataset.groupby(level="model", sort=False):
            best = {
                column: (
                    block[column].max() if column in metrics and _bigger_is_better(column) else block[column].min()
                )
                for column in columns
            }
            for (_, _, sampler), values in block.iterrows():
                cells = []
                for column in columns:
                    text = _cell(values[column], values[f"{column} std"], 4 if column in metrics else 2)
                    if text and values[column] == best[column] and len(block) > 1:
                        text = f"**{text}**"
                    p_value = tests.get(column, {}).get((dataset, model, sampler))
                    if p_value is not None and p_value < SIGNIFICANCE_LEVEL:
                        text += f" {MARK}"
                    cells.append(text)
                if sampler == BASELINE:
                    test = "—"
                else:
                    p_value = tests.get(headline, {}).get((dataset, model, sampler))
                    test = "n/a" if p_value is None else f"{p_value:.3g}"
                lines.append(f"| {model} | {sampler} | {int(values['seeds'])} | {' | '.join(cells)} | {test} |")
        lines.append("")
    lines.append(
        f"Test metrics at the epoch chosen on validation, mean ± standard deviation over seeds "
        f"({', '.join(f'{dataset}: {count}' for dataset, count in seeds.items())} seed(s)); s/epoch is the mean "
        "training epoch in seconds, negative sampling included. **Bold**: the best of each column within a model "
        f"(lowest for s/epoch). {MARK}: differs from {BASELINE} with the same model, dataset and seeds at "
        f"p < {SIGNIFICANCE_LEVEL} (two-sided paired t-test over seeds, scipy.stats.ttest_rel); the last column gives "
        f"p for {headline}. n/a: fewer than 2 seeds paired with a {BASELINE} run, so no test."
    )
    return "\n".join(lines)


def time_split_table(frame: pd.DataFrame) -> str:
    """Where the matrix's wall time went, summed over its finished runs."""
    total = frame["total_seconds"].sum()
    phases = [(label, frame[column].sum()) for column, label in TIME_PHASES]
    phases.append(("other (configs, model set-up, checkpoints, logging)", total - sum(value for _, value in phases)))
    lines = ["| phase | seconds | share |", "|---|---:|---:|"]
    lines += [f"| {label} | {value:.1f} | {100 * value / total:.1f}% |" for label, value in phases]
    lines.append(f"| **total** ({len(frame)} runs) | {total:.1f} | 100% |")
    return "\n".join(lines)


def _colours(samplers: list[str]) -> dict[str, tuple]:
    palette = plt.get_cmap("tab10")
    return {sampler: palette(index % 10) for index, sampler in enumerate(samplers)}


def plot_metric_by_sampler(frame: pd.DataFrame, metric: str, path: Path) -> None:
    """Bars of ``metric`` (mean, std as error bar) per model, one bar per sampler, one panel per dataset."""
    datasets = list(dict.fromkeys(frame["dataset"]))
    samplers = list(dict.fromkeys(frame["sampler"]))
    colours = _colours(samplers)
    figure, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets) + 1, 4), squeeze=False)
    width = 0.8 / len(samplers)
    for axis, dataset in zip(axes[0], datasets, strict=True):
        data = frame[frame["dataset"] == dataset]
        models = list(dict.fromkeys(data["model"]))
        stats = data.groupby(["model", "sampler"])[metric].agg(["mean", "std"])
        for offset, sampler in enumerate(samplers):
            present = [model for model in models if (model, sampler) in stats.index]
            positions = [models.index(model) + offset * width for model in present]
            means = [stats.loc[(model, sampler), "mean"] for model in present]
            errors = [stats.loc[(model, sampler), "std"] for model in present]
            errors = [0.0 if math.isnan(error) else error for error in errors]
            axis.bar(positions, means, width, yerr=errors, capsize=3, label=sampler, color=colours[sampler])
        axis.set_xticks([index + width * (len(samplers) - 1) / 2 for index in range(len(models))], models)
        axis.set_title(dataset)
        axis.set_ylabel(f"test {metric}")
    axes[0][-1].legend(title="sampler", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_recall_per_label(rows: list[dict], label_key: str, path: Path, reference_key: str | None = None) -> None:
    """Bars of mean test Recall@20 per row label (std as error bar), one panel per dataset.

    ``rows`` are summary dicts with ``dataset``, ``label_key``, ``recall@20`` and ``recall@20_std``; with
    ``reference_key`` a row's figure under that key (e.g. a published one) is drawn as a black mark where present.
    """
    datasets = list(dict.fromkeys(row["dataset"] for row in rows))
    figure, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
    for axis, dataset in zip(axes[0], datasets, strict=True):
        data = [row for row in rows if row["dataset"] == dataset]
        positions = list(range(len(data)))
        axis.bar(positions, [r["recall@20"] for r in data], yerr=[r["recall@20_std"] for r in data], label="ours")
        references = [(i, r[reference_key]) for i, r in enumerate(data) if reference_key and r.get(reference_key)]
        if references:
            axis.scatter(*zip(*references, strict=True), color="black", marker="_", s=400, label=reference_key)
            axis.legend(loc="lower right", fontsize="small")
        axis.set_xticks(positions, [r[label_key] for r in data], rotation=35, ha="right", fontsize=8)
        values = [r["recall@20"] for r in data] + [value for _, value in references]
        axis.set_ylim(min(values) * 0.85, max(values) * 1.05)
        axis.set_title(f"LightGCN on {dataset}")
        axis.set_ylabel("test Recall@20")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_time_vs_metric(frame: pd.DataFrame, metric: str, path: Path) -> None:
    """Seconds per training epoch against ``metric`` per (model, sampler), one panel per dataset."""
    datasets = list(dict.fromkeys(frame["dataset"]))
    colours = _colours(list(dict.fromkeys(frame["sampler"])))
    markers = dict(zip(dict.fromkeys(frame["model"]), "osD^vP*Xh<>", strict=False))
    figure, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets) + 1, 4), squeeze=False)
    for axis, dataset in zip(axes[0], datasets, strict=True):
        stats = frame[frame["dataset"] == dataset].groupby(["model", "sampler"])[["seconds_per_epoch", metric]].mean()
        for (model, sampler), values in stats.iterrows():
            axis.scatter(
                values["seconds_per_epoch"], values[metric], color=colours[sampler], marker=markers[model], s=60
            )
            axis.annotate(
                sampler,
                (values["seconds_per_epoch"], values[metric]),
                fontsize="x-small",
                xytext=(4, 2),
                textcoords="offset points",
            )
        axis.margins(x=0.15, y=0.1)  # room for the labels
        axis.set_xlabel("seconds per training epoch")
        axis.set_ylabel(f"test {metric}")
        axis.set_title(dataset)
    handles = [
        plt.Line2D([], [], color="grey", marker=marker, linestyle="", label=model) for model, marker in markers.items()
    ]
    axes[0][-1].legend(handles=handles, title="model", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(rows: list[dict], out_dir: Path, headline: str) -> dict:
    """Write table.md and the two plots for the finished ``rows``; their paths, and the table's text."""
    frame = _frame(rows)
    if frame.empty:
        return {}
    if headline not in frame.columns:  # e.g. a valid_metric that is not among the test metrics
        headline = metric_columns(frame)[0]
    table = markdown_table(frame, headline)
    split = time_split_table(frame)
    out_dir.mkdir(parents=True, exist_ok=True)  # a report of runs reused from other folders may be its first file
    table_file = out_dir / "table.md"
    table_file.write_text(f"{table}\n\n### Where the time went\n\n{split}\n", encoding="utf-8")
    plot_file = out_dir / "metric_by_sampler.png"
    plot_metric_by_sampler(frame, headline, plot_file)
    time_plot_file = out_dir / "time_vs_metric.png"
    plot_time_vs_metric(frame, headline, time_plot_file)
    return {
        "table": table_file,
        "metric_plot": plot_file,
        "time_plot": time_plot_file,
        "markdown": table,
        "split": split,
    }
