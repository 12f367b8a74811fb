"""runs.csv: one row per benchmark run, safe to interrupt and to resume."""

from __future__ import annotations

import csv
from logging import getLogger
from pathlib import Path

from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.io import atomic_write

logger = getLogger(__name__)

KEY_COLUMNS = ("model", "sampler", "dataset", "seed")
# Metric columns (test metrics, e.g. recall@10) go between the key columns and these.
RUN_COLUMNS = (
    "best_epoch",
    "epochs_run",
    "seconds_per_epoch",
    "total_seconds",
    "load_seconds",
    "sampling_seconds",
    "train_seconds",
    "eval_seconds",
    "peak_rss_mb",
    "peak_gpu_mb",
    "config_hash",
    "status",
    "error",
)


class RunsFile:
    """The rows of ``runs.csv``, rewritten whole through a temporary file and a rename after every run.

    A reader (or a Ctrl-C) therefore sees the file before or after a row, never half of one. Rows are keyed by
    (config hash, seed): recording a run again (a failed run retried) replaces its row.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, str]] = []
        self.dropped_rows = 0
        if path.is_file():
            with open(path, newline="", encoding="utf-8") as stream:
                reader = csv.DictReader(stream)
                missing = [
                    column
                    for column in (*KEY_COLUMNS, "config_hash", "status")
                    if column not in (reader.fieldnames or [])
                ]
                if missing:
                    raise ConfigurationError(
                        f"{path} is not a benchmark runs file (no {', '.join(missing)} column). Fix: pick another "
                        "--name, or move that file away."
                    )
                rows = list(reader)
            # A row cut short (a copy or an editor that stopped mid-write) has empty trailing fields or too many:
            # it records no run, and keeping it would leave two rows for the run once it is run again.
            self.rows = [row for row in rows if None not in row and None not in row.values()]
            cut = [index + 2 for index, row in enumerate(rows) if None in row or None in row.values()]
            if cut:
                logger.warning(
                    f"{path}: dropped {len(cut)} incomplete row(s) (line {', '.join(map(str, cut))}); "
                    "their runs count as not finished and run again"
                )
            self.dropped_rows = len(cut)

    @staticmethod
    def key(config_hash: str, seed) -> tuple[str, str]:
        """How a run is recognised on resume."""
        return str(config_hash), str(seed)

    def finished(self, required: tuple[str, ...] = ()) -> set[tuple[str, str]]:
        """Keys of the runs that completed with every ``required`` column filled (the others are run again)."""
        return {
            self.key(row["config_hash"], row["seed"])
            for row in self.rows
            if row["status"] == "ok" and all(row.get(column) for column in required)
        }

    def record(self, row: dict) -> None:
        """Add ``row`` (or replace the row of the same run) and write the file."""
        key = self.key(row["config_hash"], row["seed"])
        row = {column: "" if value is None else str(value) for column, value in row.items()}
        self.rows = [existing for existing in self.rows if self.key(existing["config_hash"], existing["seed"]) != key]
        self.rows.append(row)
        self._write()

    def columns(self) -> list[str]:
        """Key columns, the metric columns in the order first seen, then the run columns."""
        fixed = {*KEY_COLUMNS, *RUN_COLUMNS}
        metrics = dict.fromkeys(column for row in self.rows for column in row if column not in fixed)
        return [*KEY_COLUMNS, *metrics, *RUN_COLUMNS]

    def _write(self) -> None:
        def write(stream) -> None:
            writer = csv.DictWriter(stream, fieldnames=self.columns(), restval="")
            writer.writeheader()
            writer.writerows(self.rows)

        atomic_write(self.path, write)
