"""Scale-out of the LLM stages over Ray: profile and negative generation and text embedding, shard by shard.

    python -m recbole_hnlm.llm all --dataset ml-100k --llm smollm2 --ray_address=local --ray_workers=2
    python -m recbole_hnlm.llm all --dataset beauty-dens --llm smollm2 --ray_address=10.0.0.5:6379

The driver (the process running the command) finds what is missing exactly as a single-process run does, and
hands each missing shard of records (``llm_shard_size`` units) and each missing chunk of vectors
(``llm_vector_chunk`` rows) to a worker. A worker is a Ray actor with its own generator and embedder, loaded on
first use: one worker per GPU where the cluster has GPUs, else one per ``llm_torch_threads`` CPUs (1 by
default), each with that many torch threads. Workers write shard files into the cache folder atomically, as the
single-process run does, and vector chunks as ``<array>.chunks/rows-<first>-<end>.npy``; the driver assembles
the arrays from the chunks, grounds the negatives and writes the summaries and the manifest as the
single-process run does, so both give the same files. A shard or chunk whose file exists is not made again: a
rerun after a crash does only what is missing, and a rerun of a finished cache starts no Ray at all.

Workers on other machines must see the cache folder at the same path (a shared file system) and have
recbole-hnlm, its models and the prompt files installed alike.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from logging import getLogger
from math import ceil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from recbole_hnlm.compat import ray_trial_gpu_id
from recbole_hnlm.errors import CacheMismatchError, ClusterUnreachableError, ConfigurationError, HNLMError
from recbole_hnlm.llm.backends import TextEmbedder, TextGenerator, apply_torch_threads, create_generator
from recbole_hnlm.llm.cache import ShardedRecords, fill_array_in_chunks, finished_chunks, write_array_atomic
from recbole_hnlm.llm.generation import RecordJob
from recbole_hnlm.llm.settings import LLMSettings
from recbole_hnlm.ray_cluster import check_ray_address

LOCAL = "local"
RAY_INSTALL = "pip install -e '.[tune]'"
RECORD_SHARDS = "record shards"
VECTOR_CHUNKS = "vector chunks"

logger = getLogger()


@dataclass(frozen=True)
class RemoteEmbedder:
    """The workers' embedding model as the driver knows it: its name and size, for the manifest and its checks."""

    name: str
    dim: int

    def describe(self) -> dict:
        """What identifies the embedder in a cache manifest (as ``TextEmbedder.describe``)."""
        return {"model": self.name, "dim": self.dim}


class CacheWorker:
    """A Ray actor that writes the shard files and vector chunks it is given, with its own generator and embedder."""

    def __init__(self, settings: LLMSettings) -> None:
        gpus = ray_trial_gpu_id()
        # Ray shows the actor only the GPU it was given, so "cuda" is that one whatever llm_device named.
        self.settings = replace(settings, device="cuda" if gpus else "cpu", torch_threads=settings.torch_threads or 1)
        apply_torch_threads(self.settings)
        self.name = f"{socket.gethostname()}:{os.getpid()}" + (f" (GPU {gpus})" if gpus else "")
        self._generator: TextGenerator | None = None
        self._embedder: TextEmbedder | None = None
        self._job_key: str | None = None
        self._job = None

    def _unbox(self, boxed: list):
        """The job in the one-element list ``boxed`` (an ObjectRef), fetched and unpickled once per job."""
        import ray

        key = boxed[0].hex()
        if key != self._job_key:
            self._job, self._job_key = ray.get(boxed[0]), key
        return self._job

    def _embedder_model(self) -> TextEmbedder:
        if self._embedder is None:
            self._embedder = TextEmbedder(self.settings)
        return self._embedder

    def embedder_description(self) -> dict:
        """Load the embedder (kept for the chunks to come) and describe it."""
        return self._embedder_model().describe()

    def write_record_shard(
        self, boxed_job: list, store: ShardedRecords, first: int, end: int, saved: dict[int, dict]
    ) -> str:
        """Make and save the shard of units ``first..end-1`` (``saved`` holds those already answered); who did it."""
        job: RecordJob = self._unbox(boxed_job)
        if self._generator is None and job.prompt_of is not None and len(saved) < end - first:
            self._generator = create_generator(self.settings)
        job.write_shard(store, first, end, saved, self._generator, tqdm(disable=True))
        return self.name

    def write_vector_chunk(self, boxed_rows_of: list, path: Path, start: int, end: int) -> str:
        """Embed rows ``start..end-1`` and save them as one chunk file; who did it."""
        rows_of = self._unbox(boxed_rows_of)
        write_array_atomic(path, rows_of(self._embedder_model())(start, end))
        return self.name


class ShardWorkers:
    """The Ray workers of one command; Ray and the workers start when the first shard or chunk is to be made."""

    def __init__(self, address: str, n_workers: int | None = None, connect_timeout_s: float = 10) -> None:
        self.address = address
        self.n_workers = n_workers
        self.connect_timeout_s = connect_timeout_s
        self.settings: LLMSettings | None = None
        self.done: dict[str, Counter] = {RECORD_SHARDS: Counter(), VECTOR_CHUNKS: Counter()}
        self.workers_started = 0
        self._actors: list = []
        self._pool = None
        self._started_ray = False

    def check(self) -> None:
        """Refuse a bad worker count, a missing Ray, or an address where nothing answers, before any work."""
        if self.n_workers is not None and self.n_workers < 1:
            raise ConfigurationError(f"--ray_workers={self.n_workers} runs no worker. Fix: e.g. --ray_workers=2.")
        if importlib.util.find_spec("ray") is None:
            raise ConfigurationError(f"--ray_address needs Ray, which is not installed. Fix: {RAY_INSTALL}.")
        if self.address != LOCAL:
            check_ray_address(self.address, self.connect_timeout_s)

    def bind(self, settings: LLMSettings) -> None:
        """The settings the workers load their models with (those of the cache being built)."""
        if self._actors and settings != self.settings:
            self._stop_workers()  # they hold models loaded with other settings
        self.settings = settings

    def __enter__(self) -> ShardWorkers:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _start(self):
        """The pool of workers, starting Ray (or attaching to it) and the workers on first use."""
        if self._pool is not None:
            return self._pool
        import ray
        from ray.util import ActorPool

        threads = self.settings.torch_threads or 1
        if not ray.is_initialized():
            if self.address == LOCAL:
                cpus = max(os.cpu_count() or 1, threads * (self.n_workers or 1))
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
            else:
                try:
                    ray.init(address=self.address, log_to_driver=False)
                except ConnectionError as error:
                    raise ClusterUnreachableError(
                        f"Could not attach to the Ray cluster at {self.address}: {error}. Fix: start one there "
                        "(`ray start --head` prints its address), or use --ray_address=local."
                    ) from None
            self._started_ray = True
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if self.settings.device != "cpu" else 0
        count = self.n_workers or gpus or max(1, int(resources.get("CPU", 1) // threads))
        # More workers than GPUs share them evenly (Ray's fractional GPUs).
        gpu_share = 1 / ceil(count / gpus) if gpus else 0
        worker = ray.remote(CacheWorker).options(num_cpus=threads, num_gpus=gpu_share)
        self._actors = [worker.remote(self.settings) for _ in range(count)]
        self.workers_started += count
        self._pool = ActorPool(self._actors)
        where = f"{gpu_share:g} GPU" if gpus else f"{threads} CPU"
        logger.info(f"Ray: {count} LLM workers with {where} each ({self.address})")
        return self._pool

    def _run(self, kind: str, submit: Callable, calls: list, desc: str) -> None:
        """``submit(actor, call)`` for every call, spread over the workers; count who did what."""
        pool = self._start()
        results = pool.map_unordered(submit, calls)
        unit = "chunk" if kind == VECTOR_CHUNKS else "shard"
        with _worker_errors():
            for name in tqdm(results, total=len(calls), desc=f"{desc} (Ray)", unit=unit):
                self.done[kind][name] += 1

    def embedder(self) -> RemoteEmbedder:
        """The embedder the workers use, loaded on one of them."""
        import ray

        self._start()
        with _worker_errors():
            description = ray.get(self._actors[0].embedder_description.remote())
        return RemoteEmbedder(description["model"], description["dim"])

    def write_record_shards(
        self, store: ShardedRecords, ranges: list[tuple[int, int]], saved: dict[int, dict], job: RecordJob, desc: str
    ) -> None:
        """Have the workers make the shard files of ``ranges`` (missing ones), as ``generate_records`` would."""
        import ray

        self._start()
        boxed = [ray.put(job)]
        # Units of the shard that an earlier, smaller budget already answered are kept, as generate_records does.
        calls = [(first, end, {u: saved[u] for u in range(first, end) if u in saved}) for first, end in ranges]
        self._run(RECORD_SHARDS, lambda actor, call: actor.write_record_shard.remote(boxed, store, *call), calls, desc)

    def fill_vectors(
        self,
        path: Path,
        shape: tuple[int, int],
        chunk_rows: int,
        rows_of: Callable[[TextEmbedder], Callable[[int, int], np.ndarray]],
        desc: str,
    ) -> None:
        """Have the workers embed the missing chunks of the array at ``path``, then assemble it here."""
        chunks = path.with_name(path.stem + ".chunks")
        done = finished_chunks(path, shape, np.float32)
        ranges = [(start, min(start + chunk_rows, shape[0])) for start in range(0, shape[0], chunk_rows)]
        todo = [
            (start, end)
            for index, (start, end) in enumerate(ranges)
            if index not in done and not _chunk_path(chunks, start, end).is_file()
        ]
        if todo:
            import ray

            self._start()
            boxed = [ray.put(rows_of)]
            self._run(
                VECTOR_CHUNKS,
                lambda actor, rows: actor.write_vector_chunk.remote(boxed, _chunk_path(chunks, *rows), *rows),
                todo,
                desc,
            )

        def read_chunk(start: int, end: int) -> np.ndarray:
            rows = np.load(_chunk_path(chunks, start, end))
            if rows.shape != (end - start, shape[1]) or rows.dtype != np.float32:
                raise CacheMismatchError(
                    f"{_chunk_path(chunks, start, end)} holds {rows.dtype} rows of shape {rows.shape}, not float32 "
                    f"{(end - start, shape[1])}. Fix: delete {chunks} and run again."
                )
            return rows

        fill_array_in_chunks(path, shape, np.float32, chunk_rows, read_chunk, desc)
        shutil.rmtree(chunks, ignore_errors=True)

    def _stop_workers(self) -> None:
        """Stop the workers (Ray stays up)."""
        import ray

        for actor in self._actors:
            ray.kill(actor)
        self._actors, self._pool = [], None

    def close(self) -> None:
        """Stop the workers, and Ray where this object started it."""
        for kind, by_worker in self.done.items():
            if by_worker:
                logger.info(f"Ray workers wrote {sum(by_worker.values())} {kind}: {dict(by_worker)}")
        if self._actors:
            self._stop_workers()
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False


@contextmanager
def _worker_errors():
    """A worker's bad-input error (an HNLMError) raised as it would be in one process, without Ray's wrapping."""
    from ray.exceptions import RayTaskError

    try:
        yield
    except RayTaskError as error:
        if isinstance(error.cause, HNLMError):
            raise error.cause from None
        raise


def _chunk_path(chunks: Path, start: int, end: int) -> Path:
    """The file of rows ``start..end-1`` in a chunk folder."""
    return chunks / f"rows-{start:012d}-{end:012d}.npy"
