"""End to end: ``nlpforge serve`` in a subprocess, its playground page (``GET /``) driven in headless Chromium.

Chromium is spoken to over the Chrome DevTools Protocol (a websocket, ``websockets.sync``); no browser
automation package is needed. Skips when ``chromium`` is not on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from conftest import tiny_hf_model, tiny_tokenizer

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LABELS = {"LABEL_0", "LABEL_1", "LABEL_2"}
LATENCY = re.compile(r"latency: \d+(?:\.\d+)? ms")
# Plain urllib, never through a proxy from the environment: everything here is on 127.0.0.1.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Call ``probe`` until it returns something truthy (returned); fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what} (last value: {value!r})")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    """(status, parsed body) of a GET; (0, None) when nothing answers yet."""
    try:
        with HTTP.open(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None
    except (OSError, ValueError):
        return 0, None


# ---------------------------------------------------------------------------- the server


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-chars:] if path.exists() else ""


@contextmanager
def serving(artifact: Path | None, log: Path, *extra: str, timeout: float = 60.0) -> Iterator[str]:
    """``nlpforge serve [ARTIFACT]`` on a free port until ``/ready`` says 200; yields its base URL, then stops it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "NLPFORGE_API_KEY"}  # the --api-key envvar
    env["HF_HUB_OFFLINE"] = "1"
    command = [sys.executable, "-m", "nlpforge.cli", "serve", *([str(artifact)] if artifact else []),
               "--port", str(port), "--threads", "1", "--log-level", "warning", *extra]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode} before it was ready:\n{_tail(log)}")
            return get_json(f"{base}/ready", timeout=2.0)[0] == 200

        wait_for(f"{base}/ready to answer 200", ready, timeout, interval=0.25)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# ---------------------------------------------------------------------------- the browser


class CDPError(Exception):
    """An error answer of the DevTools protocol, or a JavaScript exception in Runtime.evaluate."""


class Page:
    """One Chromium page target over the Chrome DevTools Protocol (commands by id; events are kept)."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=None, proxy=None, open_timeout=10, close_timeout=2)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, timeout: float = 15.0, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no DevTools answer to {method} within {timeout:g} s")
            try:
                message = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                continue
            if message.get("id") != ident:
                self.events.append(message)
                continue
            if "error" in message:
                raise CDPError(f"{method}: {message['error']}")
            return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CDPError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def poll(self, what: str, expression: str, timeout: float = 30.0) -> Any:
        """Evaluate ``expression`` until truthy; errors while a navigation swaps documents count as not yet."""
        def probe() -> Any:
            try:
                return self.evaluate(expression)
            except CDPError:
                return None
        return wait_for(what, probe, timeout)

    def page_errors(self) -> list[str]:
        """Uncaught JavaScript exceptions reported since Runtime.enable."""
        return [json.dumps(e["params"]["exceptionDetails"])[:500] for e in self.events
                if e.get("method") == "Runtime.exceptionThrown"]

    def close(self) -> None:
        self.ws.close()


def _stop_group(process: subprocess.Popen) -> None:
    """Stop a process started with start_new_session and everything it spawned (its process group):
    SIGTERM, then SIGKILL to the group in any case, so that no renderer or zygote outlives the browser."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """A fresh headless Chromium (its own profile) and a DevTools session on its about:blank page."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not found on PATH (install the Debian package 'chromium' to run the playground test)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = profile.parent / "chromium.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    session = None
    try:
        active = profile / "DevToolsActivePort"

        def devtools_port() -> int | None:
            if process.poll() is not None:
                pytest.fail(f"chromium exited with {process.returncode}:\n{_tail(log)}")
            lines = active.read_text().splitlines() if active.exists() else []
            return int(lines[0]) if len(lines) >= 2 and lines[0].isdigit() else None

        port = wait_for(f"{active} (chromium's DevTools port)", devtools_port, 30.0)

        def page_target() -> str | None:
            status, targets = get_json(f"http://127.0.0.1:{port}/json")
            pages = [t for t in targets or [] if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
            return pages[0]["webSocketDebuggerUrl"] if status == 200 and pages else None

        session = Page(wait_for("a page target in chromium's /json", page_target, 30.0))
        session.send("Runtime.enable")
        yield session
    finally:
        if session is not None:
            session.close()
        _stop_group(process)


def open_playground(page: Page, base: str, field: str = "f-text") -> None:
    """Navigate to the playground and wait until its script has built the form from /ready."""
    page.events.clear()
    navigation = page.send("Page.navigate", url=f"{base}/")
    assert not navigation.get("errorText"), navigation
    page.poll(f"the playground form (#{field}, #run enabled)",
              f"location.href === {json.dumps(base + '/')} && document.readyState === 'complete'"
              f" && document.getElementById({json.dumps(field)}) !== null && !document.getElementById('run').disabled")


def set_value(page: Page, element_id: str, value: str) -> None:
    page.evaluate(f"document.getElementById({json.dumps(element_id)}).value = {json.dumps(value)}")


RESULT = """(() => {
  const q = s => document.querySelector(s);
  if (!q('#error') && !(q('#label') && q('#latency'))) return null;
  return {label: q('#label b') ? q('#label b').textContent : null,
          latency: q('#latency') ? q('#latency').textContent : null,
          error: q('#error') ? q('#error').textContent : null};
})()"""


def submit(page: Page) -> dict[str, Any]:
    """Click Predict (on an emptied #result) and wait for the rendered answer: label, latency, error."""
    page.evaluate("document.getElementById('result').innerHTML = ''; document.getElementById('run').click(); true")
    return page.poll("#result to show #label and #latency, or #error", RESULT)


# ---------------------------------------------------------------------------- the tests


@pytest.fixture
def classifier_dir(tmp_path: Path, tiny_vocab: Path) -> Path:
    """A saved tiny random BertForSequenceClassification (labels LABEL_0..LABEL_2) with its tokenizer."""
    out = tmp_path / "tiny-classifier"
    tiny_hf_model("BertForSequenceClassification").save_pretrained(out)
    tiny_tokenizer(tiny_vocab).save_pretrained(out)
    return out


def test_playground_classifies_in_the_browser(page: Page, classifier_dir: Path, tmp_path: Path) -> None:
    with serving(classifier_dir, tmp_path / "server.log") as base:
        open_playground(page, base)
        assert page.evaluate("document.getElementById('key-row').hidden") is True  # no --api-key: no key field
        assert "labels: LABEL_0, LABEL_1, LABEL_2" in page.evaluate("document.getElementById('model').textContent")
        set_value(page, "f-text", "a b c d e")
        result = submit(page)
        assert result["error"] is None, result
        assert result["label"] in LABELS, result
        assert LATENCY.fullmatch(result["latency"].strip()), result
        assert page.page_errors() == []


def test_playground_sends_the_api_key(page: Page, classifier_dir: Path, tmp_path: Path) -> None:
    with serving(classifier_dir, tmp_path / "server.log", "--api-key", "secret") as base:
        open_playground(page, base)
        assert page.evaluate("document.getElementById('key-row').hidden") is False
        set_value(page, "f-text", "a b c d e")

        refused = submit(page)
        assert refused["error"] is not None and "401" in refused["error"], refused
        assert refused["label"] is None, refused

        set_value(page, "api-key", "secret")
        result = submit(page)
        assert result["error"] is None, result
        assert result["label"] in LABELS, result
        assert LATENCY.fullmatch(result["latency"].strip()), result
        assert page.page_errors() == []


def test_playground_asks_a_qa_directory_served_alone(page: Page, tmp_path: Path) -> None:
    from nlpforge.qa.cqa import build_faq_index

    (tmp_path / "faq.tsv").write_text("how do I reset my password\tuse the reset link\n"
                                      "where is the office\tsecond floor\n", encoding="utf-8")
    build_faq_index(tmp_path / "faq.tsv", tmp_path / "faq", "bm25", progress=False)
    with serving(None, tmp_path / "server.log", "--qa", str(tmp_path / "faq")) as base:
        open_playground(page, base, "f-question")
        set_value(page, "f-question", "reset password")
        result = submit(page)
        assert result["error"] is None and result["label"] == "use the reset link", result
        assert LATENCY.fullmatch(result["latency"].strip()), result
        assert page.page_errors() == []
