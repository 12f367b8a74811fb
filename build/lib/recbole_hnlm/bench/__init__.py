"""Side-by-side benchmarks: every (model, sampler, dataset, seed) of a matrix, one table, plots and a time split.

    python -m recbole_hnlm.bench --models=BPR,LightGCN --samplers=uniform,dns --datasets=ml-100k --seeds=3

writes ``results/<name>/``: ``runs.csv`` (one row per run), ``table.md`` (mean ± std, best in bold, a paired
test against uniform, where the time went), ``metric_by_sampler.png``, ``time_vs_metric.png``, the runs' own
JSON under ``runs/`` and ``manifest.json`` (what made them). Rerunning the command resumes it.
"""

from recbole_hnlm.bench.dataset_cache import LoadedDatasetCache
from recbole_hnlm.bench.matrix import BenchCell, MatrixSpec
from recbole_hnlm.bench.runner import run_matrix

__all__ = ["BenchCell", "LoadedDatasetCache", "MatrixSpec", "run_matrix"]
