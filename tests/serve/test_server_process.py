"""``nlpforge serve`` as a real process: binds to loopback, drains on SIGTERM; ``bench-serve`` against it."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import run_cli, tiny_hf_model, tiny_tokenizer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nlpforge_command() -> list[str]:
    script = Path(sys.executable).with_name("nlpforge")
    return [str(script)] if script.exists() else [shutil.which("nlpforge") or "nlpforge"]


def start_server(checkpoint: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([*nlpforge_command(), "serve", str(checkpoint), "--port", str(port),
                                "--threads", "1", "--log-level", "warning", *flags],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {process.stderr.read()}")
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError("server never became ready")


@pytest.fixture
def checkpoint(tmp_path: Path, tiny_vocab: Path) -> Path:
    out = tmp_path / "classifier"
    tiny_hf_model("BertForSequenceClassification").save_pretrained(out)
    tiny_tokenizer(tiny_vocab).save_pretrained(out)
    return out


@pytest.fixture
def stop_later() -> Iterator[list[subprocess.Popen]]:
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_sigterm_drains_in_flight_requests(checkpoint: Path, stop_later: list) -> None:
    # A 1.5 s batching window keeps the request in flight when SIGTERM arrives.
    process, url = start_server(checkpoint, "--max-wait-ms", "1500", "--max-batch-size", "64")
    stop_later.append(process)
    result: dict = {}
    sender = threading.Thread(target=lambda: result.update(
        response=httpx.post(f"{url}/v1/predict", json={"inputs": ["a b", "c"]}, timeout=30)))
    sender.start()
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    sender.join(30)
    assert result["response"].status_code == 200 and len(result["response"].json()["outputs"]) == 2
    # uvicorn re-raises the signal once it has shut down gracefully: killed by SIGTERM, not crashed.
    assert process.wait(30) in (0, -signal.SIGTERM)
    log = process.stderr.read()
    assert "Traceback" not in log and "http://127.0.0.1:" in log  # loopback unless told otherwise


def test_busy_port_is_a_one_line_error_before_the_model_loads(tmp_path: Path) -> None:
    with socket.socket() as holder:  # another server on the port
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        # The model path does not exist: the port's error comes first, so nothing was loaded.
        result = subprocess.run([*nlpforge_command(), "serve", str(tmp_path / "no-model"), "--port", str(port)],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: port {port} on 127.0.0.1 is in use; "), lines
    assert "--port" in lines[0]


def test_port_0_serves_on_the_port_it_prints(checkpoint: Path, stop_later: list, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen([*nlpforge_command(), "serve", str(checkpoint), "--port", "0", "--threads", "1",
                                    "--log-level", "warning"], stdout=out, stderr=subprocess.STDOUT, text=True)
    stop_later.append(process)
    deadline = time.monotonic() + 90
    while not (found := re.search(r"on http://127\.0\.0\.1:(\d+) ", log.read_text())):
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    url = f"http://127.0.0.1:{found.group(1)}"
    assert found.group(1) != "0"
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    assert httpx.post(f"{url}/v1/predict", json={"inputs": ["a b"]}).status_code == 200


def test_bench_serve_closed_and_open_loop(checkpoint: Path, stop_later: list, tmp_path: Path,
                                          monkeypatch, capsys) -> None:
    process, url = start_server(checkpoint, "--max-queue", "2", "--max-inputs", "1", "--max-batch-size", "1",
                                "--max-wait-ms", "0")
    stop_later.append(process)
    (tmp_path / "inputs.txt").write_text("a b c\nd e\n" + json.dumps({"text": "f", "text_pair": "g"}) + "\n")
    code, printed, err = run_cli(monkeypatch, capsys, "bench-serve", url, "--input", tmp_path / "inputs.txt",
                                 "--concurrency", "2", "--duration", "1", "--json", tmp_path / "closed.json")
    assert code == 0, err
    closed = json.loads((tmp_path / "closed.json").read_text())
    assert closed["by_status"] == {"200": closed["requests"]} and closed["requests"] > 0
    assert "p99" in printed and closed["latency_ms_ok"]["p50"] > 0
    # Open loop far past what one input per model call sustains: only 200s and 503s, none lost. On a busy
    # machine the generator may also hold back starts beyond its in-flight cap (counted, never sent).
    code, _, err = run_cli(monkeypatch, capsys, "bench-serve", url, "--input", tmp_path / "inputs.txt",
                           "--rate", "1500", "--duration", "1.5", "--json", tmp_path / "open.json")
    assert code == 0, err
    opened = json.loads((tmp_path / "open.json").read_text())
    assert set(opened["by_status"]) <= {"200", "503", "dropped_by_client"} and opened["by_status"].get("200", 0) > 0
    assert sum(opened["by_status"].values()) == opened["requests"]
    metrics = httpx.get(f"{url}/metrics").text
    assert 'route="/v1/predict",status="200"' in metrics


def test_bench_serve_bad_url_and_input(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "in.txt").write_text("{not json\n")
    code, _, err = run_cli(monkeypatch, capsys, "bench-serve", "localhost:8000", "--input", tmp_path / "in.txt")
    assert code == 2 and "http://host:port" in err
    code, _, err = run_cli(monkeypatch, capsys, "bench-serve", "http://127.0.0.1:9", "--input", tmp_path / "in.txt")
    assert code == 2 and "in.txt:1" in err
