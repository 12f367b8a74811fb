"""Asking the LLM for one JSON answer per unit, shard by shard, with retries and counted failures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from logging import getLogger
from typing import TYPE_CHECKING

from tqdm import tqdm

from recbole_hnlm.llm.backends import TextGenerator
from recbole_hnlm.llm.cache import ShardedRecords
from recbole_hnlm.llm.json_repair import parse_llm_json
from recbole_hnlm.llm.prompts import Prompt, usable_answer
from recbole_hnlm.llm.settings import LLMSettings

if TYPE_CHECKING:
    from recbole_hnlm.llm.distributed import ShardWorkers

logger = getLogger()


def generate_records(
    store: ShardedRecords,
    n_units: int,
    describe_unit: Callable[[int], dict],
    prompt_of: Callable[[int], Prompt] | None,
    prompt_name: str,
    compose_text: Callable[[int, dict | None], str],
    generator: Callable[[], TextGenerator | None],
    settings: LLMSettings,
    desc: str,
    workers: ShardWorkers | None = None,
) -> dict:
    """Make and save the record of every unit ``0..n_units-1`` that has none yet; return the status counts.

    A record holds the unit's ids (``describe_unit``), its ``status`` (ok, failed, or template when no LLM is
    used), every raw answer, the cleaned answer, and the ``text`` to embed (``compose_text(unit, answer)``;
    a failed unit is composed from its metadata alone and stays marked failed). ``generator`` is called only
    when some shard is missing, so a finished stage never loads the model. ``new`` counts the units made now.
    With ``workers`` (``recbole_hnlm.llm.distributed``) the missing shards are written by Ray workers instead,
    each with its own model, shard for shard as here.
    """
    missing = store.missing_ranges(n_units)
    todo = 0
    if missing:
        saved = store.saved()
        todo = sum(1 for first, end in missing for unit in range(first, end) if unit not in saved)
        job = RecordJob(describe_unit, prompt_of, prompt_name, compose_text, settings)
        if workers is not None:
            workers.write_record_shards(store, missing, saved, job, desc)
        else:
            model = generator() if todo and prompt_of is not None else None
            with tqdm(total=n_units, initial=n_units - todo, desc=desc, unit=prompt_name.split("_")[0]) as bar:
                for first, end in missing:
                    job.write_shard(store, first, end, saved, model, bar)
    counts = {"units": n_units, "ok": 0, "failed": 0, "template": 0, "new": todo}
    for record in store.read(n_units):
        counts[record["status"]] += 1
    if counts["failed"]:
        logger.warning(
            f"{desc}: {counts['failed']} of {n_units} answers were unusable after {settings.max_attempts} tries; "
            "they are recorded as failed (status=failed in the shard files) and counted in the manifest."
        )
    return counts


@dataclass(frozen=True)
class RecordJob:
    """How the records of one stage are made: everything a shard needs but the model (picklable for Ray)."""

    describe_unit: Callable[[int], dict]
    prompt_of: Callable[[int], Prompt] | None
    prompt_name: str
    compose_text: Callable[[int, dict | None], str]
    settings: LLMSettings

    def write_shard(
        self, store: ShardedRecords, first: int, end: int, saved: dict[int, dict], model: TextGenerator | None, bar
    ) -> None:
        """Answer the units ``first..end-1`` that ``saved`` lacks and save the shard's records as one file."""
        units = [unit for unit in range(first, end) if unit not in saved]
        fresh = _answer_units(
            units, self.describe_unit, self.prompt_of, self.prompt_name, self.compose_text, model, self.settings, bar
        )
        store.write(first, end, [saved.get(unit) or fresh[unit] for unit in range(first, end)])


def _answer_units(
    units: list[int],
    describe_unit: Callable[[int], dict],
    prompt_of: Callable[[int], Prompt] | None,
    prompt_name: str,
    compose_text: Callable[[int, dict | None], str],
    model: TextGenerator | None,
    settings: LLMSettings,
    bar: tqdm,
) -> dict[int, dict]:
    """The records of ``units``: one LLM answer each (retried while unusable), or rule-written without a model.

    A unit whose ``prompt_of`` is None (outside an LLM budget) is rule-written too, with status ``template``.
    """
    prompts = {unit: prompt_of(unit) for unit in units} if model is not None else {}
    ruled = [unit for unit in units if prompts.get(unit) is None]
    records = {unit: {**describe_unit(unit), "status": "template", "text": compose_text(unit, None)} for unit in ruled}
    bar.update(len(ruled))
    units = [unit for unit in units if unit not in records]
    # Shortest prompts together, so left padding wastes little; the order is fixed, so a resumed run batches alike.
    pending = sorted(units, key=lambda unit: (sum(len(m["content"]) for m in prompts[unit].messages), unit))
    raw: dict[int, list[str]] = {unit: [] for unit in units}
    reasons: dict[int, str] = {}
    answers: dict[int, dict] = {}
    for attempt in range(settings.max_attempts):
        for start in range(0, len(pending), settings.batch_size):
            batch = pending[start : start + settings.batch_size]
            for unit, text in zip(batch, model.generate([prompts[unit] for unit in batch], attempt), strict=True):
                raw[unit].append(text)
                answer, reasons[unit] = usable_answer(prompt_name, parse_llm_json(text))
                if answer is not None:
                    answers[unit] = answer
            if attempt == 0:
                bar.update(len(batch))
        pending = [unit for unit in pending if unit not in answers]
        if not pending:
            break
    for unit in units:
        answer = answers.get(unit)
        records[unit] = {
            **describe_unit(unit),
            "status": "ok" if answer is not None else "failed",
            "attempts": len(raw[unit]),
            "raw": raw[unit],
            "answer": answer,
            "reason": "" if answer is not None else reasons[unit],
            "text": compose_text(unit, answer),
        }
    return records


def record_stage(stages: dict, name: str, counts: dict, seconds: float) -> None:
    """Record a stage's counts, and the time and rate of the run that answered units (a no-op rerun keeps them)."""
    new = counts.pop("new")
    if new or name not in stages:
        counts["seconds_last_run"] = round(seconds, 1)
        counts["units_answered_last_run"] = new
        answered_by_llm = counts["ok"] + counts["failed"] > 0
        counts["units_per_minute_last_run"] = round(60 * new / seconds, 1) if new and answered_by_llm else None
        stages[name] = counts
