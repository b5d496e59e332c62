"""`edgeagent serve` end to end: the real server (a subprocess on a free port, the
default model, the batched engine host) driven by the official `openai` client.

One server for the module (`--parallel 1 --queue 0`, an API key, no wiki), so
a second request while one runs is a 503. Short runs: 1-2 steps, few tokens.
Checks the machinery, not the answers of a 135M model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

pytestmark = pytest.mark.slow
KEY = "test-key-123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(default_model: Path, tiny_gguf: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    env = dict(os.environ, EDGEAGENT_HOME=str(tmp_path_factory.mktemp("serve-home")))
    env.pop("EDGEAGENT_API_KEY", None)
    # a second registered model: offered too, loaded when a request names it
    subprocess.run([sys.executable, "-m", "edgeagent", "models", "add", str(tiny_gguf),
                    "--name", "tiny"], env=env, check=True, capture_output=True)
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgeagent", "serve", "--model", str(default_model),
             "--port", str(port), "--no-wiki", "--parallel", "1", "--queue", "0",
             "--api-key", KEY, "--n-ctx", "4096", "--max-steps", "2", "--threads", "1"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"edgeagent serve did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def client(server: str) -> Any:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def name(default_model: Path) -> str:
    return default_model.stem


def test_models_lists_the_agent_and_the_plain_model(client: Any, name: str) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == [name, f"{name}:chat", "tiny", "tiny:chat"]  # the loaded one first
    assert httpx.get(f"{client.base_url}models/{name}:chat",
                     headers={"Authorization": f"Bearer {KEY}"}).json()["id"] == f"{name}:chat"


def test_agent_answer_with_its_trajectory(client: Any, name: str) -> None:
    r = client.chat.completions.create(
        model=name, messages=[{"role": "user", "content": "What is 6 * 7?"}],
        temperature=0, max_tokens=64, extra_body={"max_steps": 1},
    )
    traj = r.model_extra["edgeagent"]
    msg = r.choices[0].message
    assert traj["question"] == "What is 6 * 7?" and len(traj["steps"]) == 1
    assert msg.content == traj["answer"] and msg.content
    reasoning = msg.model_extra["reasoning_content"]
    assert reasoning.startswith("**Step 1**")
    assert traj["steps"][0]["observation"].strip() in reasoning
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == traj["tokens"]["completion"] > 0
    assert not getattr(msg, "tool_calls", None)


def test_streamed_steps_as_reasoning_and_the_answer_as_content(client: Any, name: str) -> None:
    stream = client.chat.completions.create(
        model=name, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Compute 17 * 23 with Python."}],
        temperature=0, max_tokens=100, extra_body={"max_steps": 1},
    )
    reasoning, content, finish, traj, usage = [], [], [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            assert not delta.tool_calls
            reasoning.append((delta.model_extra or {}).get("reasoning_content") or "")
            content.append(delta.content or "")
            if choice.finish_reason:
                finish.append(choice.finish_reason)
                traj = chunk.model_extra["edgeagent"]
    assert finish == ["stop"] and traj is not None
    text = "".join(reasoning)
    coded = [s for s in traj["steps"] if s["code"]]
    assert coded, "the model wrote no code block"
    for step in coded:
        assert step["code"] in text
    assert "".join(content) == traj["answer"]
    assert usage is not None and usage.completion_tokens == traj["tokens"]["completion"]


def test_chat_model_answers_without_tools(client: Any, name: str) -> None:
    r = client.chat.completions.create(
        model=f"{name}:chat", messages=[{"role": "user", "content": "Say hello."}],
        temperature=0, max_tokens=12,
    )
    assert r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert "edgeagent" not in (r.model_extra or {})
    assert "reasoning_content" not in (r.choices[0].message.model_extra or {})


def test_a_registered_model_is_loaded_on_request(server: str, client: Any, name: str) -> None:
    assert httpx.get(f"{server}/health").json()["model"] == name
    r = client.chat.completions.create(
        model="tiny:chat", messages=[{"role": "user", "content": "Say hello."}],
        temperature=0, max_tokens=4,
    )
    assert r.model == "tiny:chat" and r.choices[0].finish_reason in ("stop", "length")
    assert httpx.get(f"{server}/health").json()["model"] == "tiny"
    assert [m.id for m in client.models.list()][:2] == ["tiny", "tiny:chat"]
    r = client.chat.completions.create(
        model=f"{name}:chat", messages=[{"role": "user", "content": "Say hello."}],
        temperature=0, max_tokens=4,
    )
    assert r.choices[0].message.content
    assert httpx.get(f"{server}/health").json()["model"] == name


def test_errors_in_the_openai_shape(server: str, client: Any, name: str) -> None:
    wrong = openai.OpenAI(base_url=f"{server}/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as auth:
        wrong.models.list()
    assert auth.value.status_code == 401 and auth.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model",
                                       messages=[{"role": "user", "content": "hi"}])
    assert missing.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=name, messages=[])
    assert bad.value.body["param"] == "messages"
    r = httpx.post(f"{server}/v1/chat/completions", content=b"{not json",
                   headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_full_queue_503_and_disconnect_stops_generation(server: str, client: Any,
                                                        name: str) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"model": name, "stream": True, "temperature": 0, "max_tokens": 400,
            "max_steps": 5, "messages": [{"role": "user", "content":
                                          "Write a long story about a robot, step by step."}]}
    with httpx.Client(timeout=120) as http, \
            http.stream("POST", f"{server}/v1/chat/completions", json=body,
                        headers=headers) as resp:
        assert resp.status_code == 200
        lines = resp.iter_lines()  # held: dropping the iterator would close the stream
        pieces = 0
        for line in lines:
            if line.startswith("data: ") and "reasoning_content" in line:
                pieces += 1
                if pieces == 3:  # the step header, then two pieces decoded by the model
                    break
        with pytest.raises(openai.APIStatusError) as busy:
            client.chat.completions.create(model=name,
                                           messages=[{"role": "user", "content": "hi"}])
        assert busy.value.status_code == 503 and busy.value.body["code"] == "queue_full"
        before = httpx.get(f"{server}/health").json()["tokens_generated"]
        left = time.monotonic()
    # the client has closed the stream: the run must end and decode nothing more
    deadline = time.time() + 60
    while (health := httpx.get(f"{server}/health").json())["running"]:
        assert time.time() < deadline, "the run went on after the client left"
        time.sleep(0.05)
    stopped = health["tokens_generated"]
    print(f"run ended {time.monotonic() - left:.3f} s after the client left")
    time.sleep(1.0)
    assert httpx.get(f"{server}/health").json()["tokens_generated"] == stopped >= before
    r = client.chat.completions.create(model=f"{name}:chat", temperature=0, max_tokens=4,
                                       messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content is not None
