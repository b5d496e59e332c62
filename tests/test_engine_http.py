"""OpenAIEngine against real HTTP servers started here: a scripted local
server for retries and errors (fast), and llama-cpp-python's own
`llama_cpp.server` serving the default model (slow)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from edgeagent.engines.chat_template import template_from_gguf
from edgeagent.engines.openai_http import OpenAIEngine
from edgeagent.errors import UserError


class Script:
    """What the fake server answers: a queue of (status, body) then a default."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, dict[str, Any]]] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []


def _chat_reply(text: str, n: int = 1) -> dict[str, Any]:
    return {
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": f"{text}{i}"},
             "finish_reason": "stop"}
            for i in range(n)
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3 * n},
    }


@pytest.fixture
def fake_server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._send(200, {"data": [{"id": "fake-model"}]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script.requests.append((self.path, body))
            if script.replies:
                status, reply = script.replies.pop(0)
            else:
                status, reply = 200, _chat_reply("ok", 1)  # ignores n, like llama.cpp
            self._send(status, reply)

        def _send(self, status: int, data: dict[str, Any]) -> None:
            raw = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", script
    server.shutdown()
    server.server_close()


def test_retries_on_503_then_succeeds(fake_server: tuple[str, Script]) -> None:
    url, script = fake_server
    script.replies = [(503, {"error": {"message": "busy"}}), (429, {"error": "slow down"}),
                      (200, _chat_reply("fine"))]
    with OpenAIEngine(url, backoff_s=0.01) as engine:
        out = engine.generate([{"role": "user", "content": "hi"}], max_tokens=5)
    assert out[0].text == "fine0"
    assert len(script.requests) == 3


def test_gives_up_after_retries_with_one_line(fake_server: tuple[str, Script]) -> None:
    url, script = fake_server
    script.replies = [(500, {"error": {"message": "boom"}})] * 3
    with OpenAIEngine(url, retries=2, backoff_s=0.01) as engine, pytest.raises(UserError) as err:
        engine.generate([{"role": "user", "content": "hi"}])
    assert "500" in str(err.value) and "boom" in str(err.value) and "3 attempts" in str(err.value)
    assert "\n" not in str(err.value)


def test_client_errors_are_not_retried(fake_server: tuple[str, Script]) -> None:
    url, script = fake_server
    script.replies = [(400, {"error": {"message": "max_tokens too large"}})]
    with OpenAIEngine(url, backoff_s=0.01) as engine, pytest.raises(UserError, match="too large"):
        engine.generate([{"role": "user", "content": "hi"}])
    assert len(script.requests) == 1


def test_n_falls_back_to_separate_requests(fake_server: tuple[str, Script]) -> None:
    url, script = fake_server
    with OpenAIEngine(url) as engine:
        out = engine.generate([{"role": "user", "content": "hi"}], n=3, seed=10, stop=["x"])
    assert len(out) == 3
    assert [body["n"] for _, body in script.requests] == [3, 2, 1]
    assert [body["seed"] for _, body in script.requests] == [10, 11, 12]
    assert script.requests[0][1]["stop"] == ["x"]
    assert script.requests[0][1]["model"] == "fake-model"


def test_n_in_one_request_when_the_server_honours_it(fake_server: tuple[str, Script]) -> None:
    url, script = fake_server
    script.replies = [(200, _chat_reply("v", 4))]
    with OpenAIEngine(url, model="m") as engine:
        out = engine.generate([{"role": "user", "content": "hi"}], n=4)
    assert [c.text for c in out] == ["v0", "v1", "v2", "v3"]
    assert len(script.requests) == 1


def test_prefill_without_template_uses_continue_final_message(
    fake_server: tuple[str, Script],
) -> None:
    url, script = fake_server
    with OpenAIEngine(url, model="m") as engine:
        engine.generate([{"role": "user", "content": "hi"}], prefix="Thought: I")
    path, body = script.requests[0]
    assert path == "/v1/chat/completions"
    assert body["messages"][-1] == {"role": "assistant", "content": "Thought: I"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False


def test_unreachable_server_is_one_line_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    engine = OpenAIEngine(f"http://127.0.0.1:{port}", model="m", retries=1, backoff_s=0.01)
    with engine, pytest.raises(UserError, match="cannot reach"):
        engine.generate([{"role": "user", "content": "hi"}])


def test_bad_url_is_rejected() -> None:
    with pytest.raises(UserError, match="http"):
        OpenAIEngine("localhost:8000")


# -- a real server: llama-cpp-python's own, serving the default model -------



@pytest.mark.slow
def test_real_server_chat_n_stop_stream_prefill(llama_server: str, default_model: Path) -> None:
    template = template_from_gguf(str(default_model))
    assert template
    chat = [{"role": "user", "content": "What is the capital of France? Answer briefly."}]
    with OpenAIEngine(llama_server, chat_template=template) as engine:
        answer = engine.generate(chat, max_tokens=30)  # type: ignore[arg-type]
        assert "Paris" in answer[0].text
        three = engine.generate(chat, n=3, temperature=1.0, max_tokens=16, seed=1)  # type: ignore[arg-type]
        assert len(three) == 3
        count = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]
        stopped = engine.generate(count, max_tokens=80, stop=["7"])  # type: ignore[arg-type]
        assert "7" not in stopped[0].text and stopped[0].text.strip()
        pieces: list[str] = []
        streamed = engine.generate(chat, max_tokens=30, on_token=lambda i, p: pieces.append(p))  # type: ignore[arg-type]
        assert "".join(pieces) == streamed[0].text == answer[0].text
        # assistant prefill: the model continues our text instead of starting a new turn
        pre = engine.generate(chat, prefix="The capital of France is", max_tokens=10)  # type: ignore[arg-type]
        assert not pre[0].text.startswith("The capital")
        assert "Paris" in pre[0].text
