"""runs.csv: one row per benchmark run, safe to interrupt, to resume, and to share between processes.

Several processes may run one matrix folder at once (e.g. ``--rows`` or a second command on the same ``--name``):
``record`` merges its row into the file as it is on disk under an exclusive lock, so no process drops another's
rows, and ``claim_run`` lets one process at a time train a given run. Locks are advisory (``fcntl.flock``) on files
in the system's temporary folder, keyed by the matrix folder's path, so the results folder holds results only; a
process that dies releases its locks. Where ``fcntl`` is missing (Windows), nothing is locked: run one process per
matrix folder there.
"""

from __future__ import annotations

import csv
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from logging import getLogger
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

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
        self.reload()

    def reload(self) -> None:
        """Read the rows as the file now holds them (another process may have recorded runs since)."""
        path = self.path
        self.rows, self.dropped_rows = [], 0
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
        """Add ``row`` (or replace the row of the same run) to the file as it is on disk, under the folder's lock."""
        key = self.key(row["config_hash"], row["seed"])
        row = {column: "" if value is None else str(value) for column, value in row.items()}
        with _locked(lock_folder(self.path.parent) / "runs.csv.lock"):
            self.reload()
            self.rows = [
                existing for existing in self.rows if self.key(existing["config_hash"], existing["seed"]) != key
            ]
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


def lock_folder(results_folder: Path) -> Path:
    """Where the lock files of a matrix folder live: the system's temporary folder, one subfolder per matrix path."""
    digest = hashlib.sha256(str(Path(results_folder).resolve()).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "recbole_hnlm_locks" / digest
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the block, waiting for it if another process holds it."""
    if fcntl is None:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


@contextmanager
def claim_run(results_folder: Path, config_hash: str, seed) -> Iterator[bool]:
    """Claim the run (``config_hash``, ``seed``) of a matrix folder for this process: True for the block if no other
    process holds it (it is held until the block ends, or the process dies), else False at once."""
    if fcntl is None:
        yield True
        return
    path = lock_folder(results_folder) / f"{config_hash}-seed{seed}.claim"
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")  # who holds it, for a person looking
        handle.flush()
        yield True
