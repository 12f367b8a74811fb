"""Ctrl-C ends every command with one line on stderr (what was kept, the command that resumes), 130, no traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from ml100k_slices import write_ml100k_slice

import recbole_hnlm
from recbole_hnlm.cli import INTERRUPTED
from recbole_hnlm.finetune.__main__ import main as finetune_main
from recbole_hnlm.llm.__main__ import main as llm_main
from recbole_hnlm.tuning.cli import main as tuning_main

ROOT = Path(recbole_hnlm.__file__).parents[1]  # this checkout, so that its package is the one the commands import
DATASET = "ml-100k-sigint"


@pytest.fixture(scope="module")
def data_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sigint-data")
    write_ml100k_slice(root, DATASET, max_item=20, history=(6, 12), n_users=8)
    return root


def interrupt_once(command: list[str], started: threading.Event, cwd: Path) -> tuple[int, list[str]]:
    """Run ``command``, send it SIGINT once ``started`` is set, and return its exit status and stderr lines."""
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ}
    )
    lines: list[str] = []

    def read() -> None:
        for line in process.stderr:
            lines.append(line.rstrip("\n"))
            if "training [time" in line:  # RecBole's log of a finished epoch
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(120), "\n".join(lines[-20:])
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(10)
    return status, lines


def assert_one_line(lines: list[str], command: str) -> None:
    assert lines and lines[-1].startswith("interrupted: ") and "the same command" in lines[-1], lines[-5:]
    assert command in lines[-1]
    assert not any(line.startswith("Traceback") for line in lines), "\n".join(lines)


def test_ctrl_c_in_a_training_run(data_path, tmp_path):
    arguments = [
        "--model=BPR",
        f"--dataset={DATASET}",
        f"--data_path={data_path}",
        "--epochs=1000000",  # never ends on its own: no validation, no early stop
        "--eval_step=1000000",
        "--state=INFO",
        "--show_progress=False",
        f"--checkpoint_dir={tmp_path / 'saved'}",
        f"--results_dir={tmp_path / 'results'}",
    ]
    status, lines = interrupt_once(
        [sys.executable, str(ROOT / "run_recbole_hnlm.py"), *arguments], threading.Event(), tmp_path
    )
    assert status == INTERRUPTED
    assert_one_line(lines, f"python run_recbole_hnlm.py --model=BPR --dataset={DATASET}")
    assert "runs it again" in lines[-1]


def test_ctrl_c_while_an_llm_endpoint_does_not_answer(data_path, tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/v1"
        arguments = [
            "profiles",
            f"--dataset={DATASET}",
            f"--llm=openai:{url}",
            f"--data_path={data_path}",
            "--llm_model=m",
            "--llm_request_timeout=60",
            f"--llm_cache_dir={tmp_path / 'cache'}",
        ]
        started = threading.Event()
        server.settimeout(120)
        # The command is inside a request once the server accepts its connection (kept open, never answered);
        # then it gets Ctrl-C.
        connections = []
        accepted = threading.Thread(target=lambda: (connections.append(server.accept()), started.set()), daemon=True)
        accepted.start()
        status, lines = interrupt_once([sys.executable, "-m", "recbole_hnlm.llm", *arguments], started, ROOT)
        for connection, _ in connections:
            connection.close()
    assert status == INTERRUPTED
    assert_one_line(lines, "python -m recbole_hnlm.llm profiles")
    assert "the LLM cache keeps" in lines[-1]


@pytest.mark.parametrize(
    ("main", "target", "arguments", "command"),
    [
        (llm_main, "recbole_hnlm.llm.__main__.HNLMConfig", ["profiles", "--dataset=x"], "python -m recbole_hnlm.llm"),
        (
            finetune_main,
            "recbole_hnlm.finetune.chain.ChainRun",
            ["mine", "--dataset=x"],
            "python -m recbole_hnlm.finetune",
        ),
        (tuning_main, "recbole_hnlm.tuning.cli.run_search", ["--tune=space.yaml"], "python -m recbole_hnlm.tuning"),
    ],
)
def test_every_command_prints_the_line(main, target, arguments, command, monkeypatch, capsys):
    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(target, ctrl_c)
    assert main(arguments) == INTERRUPTED
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("interrupted: ") and line.endswith(f"{command} {' '.join(arguments)}")
