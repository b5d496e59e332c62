"""`edgeagent serve` parts that need no model: request parsing and its 400s, the
conversation turned into a task, agent events as reasoning/answer text, the
bounded queue, and the CLI's refusal to bind beyond loopback without a key."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from edgeagent.agent import events as ev
from edgeagent.serve.admission import Admission
from edgeagent.serve.deltas import StepWriter
from edgeagent.serve.errors import APIError
from edgeagent.serve.request import agent_question, parse_chat_request, strip_reasoning


def _body(**kw: object) -> dict[str, object]:
    body: dict[str, object] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    body.update(kw)
    return body


@pytest.mark.parametrize(("body", "param"), [
    ([1, 2], None),
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    (_body(messages=[]), "messages"),
    (_body(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]),
     "messages"),
    (_body(messages=[{"role": "wizard", "content": "x"}]), "messages[0].role"),
    (_body(messages=[{"role": "user", "content": [{"type": "image_url"}]}]),
     "messages[0].content"),
    (_body(temperature=5), "temperature"),
    (_body(temperature="hot"), "temperature"),
    (_body(max_tokens=0), "max_tokens"),
    (_body(n=3), "n"),
    (_body(votes=99), "votes"),
    (_body(max_steps=True), "max_steps"),
    (_body(stream="yes"), "stream"),
    (_body(stop=[1]), "stop"),
])
def test_bad_requests_are_400_naming_the_field(body: object, param: str | None) -> None:
    with pytest.raises(APIError) as info:
        parse_chat_request(body)
    assert info.value.status == 400
    assert info.value.body()["error"]["param"] == param


def test_request_fields_and_extra_body() -> None:
    req = parse_chat_request(_body(
        stream=True, stream_options={"include_usage": True}, temperature=0.2, top_p=0.9,
        max_completion_tokens=77, votes=4, max_steps=2, wiki=False, stop="END",
        tools=[{"type": "function"}], user="someone",
    ))
    assert (req.stream, req.include_usage, req.temperature, req.top_p) == (True, True, 0.2, 0.9)
    assert (req.max_tokens, req.votes, req.max_steps, req.stop) == (77, 4, 2, ["END"])
    assert req.wiki == "" and req.wiki_given


def test_reasoning_sent_back_by_front_ends_is_stripped() -> None:
    text = ("<details type=\"reasoning\" done=\"true\">\n<summary>Thought</summary>\nStep 1 "
            "...</details>\nThe answer is 42.<think>more</think>")
    assert strip_reasoning(text) == "The answer is 42."
    assert strip_reasoning("Sure.<think>cut off mid-way") == "Sure."
    req = parse_chat_request(_body(messages=[
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "What is 6 * 7?"},
        {"role": "assistant", "content": "<think>Thought: multiply</think>42",
         "reasoning_content": "Thought: multiply"},
        {"role": "user", "content": [{"type": "text", "text": "And doubled?"}]},
    ]))
    q = agent_question(req.messages)
    assert q.endswith("The question now: And doubled?")
    assert "user: What is 6 * 7?\nassistant: 42" in q
    assert "multiply" not in q and "be brief" not in q
    assert agent_question(req.messages[-1:]) == "And doubled?"


def test_step_writer_streams_steps_as_reasoning_and_the_answer_as_content() -> None:
    w = StepWriter(votes=1)
    pieces = []
    for e in [ev.RunStart("q", "m", 1, 2), ev.StepStart(1), ev.Token(1, 0, "Thought: add\n"),
              ev.Token(1, 0, "Code:\n```py\nprint(1+1)\n```"),
              ev.Observation(1, "add", "print(1+1)", "Call id: call_1\nObservation:\n2"),
              ev.FinalAnswer("2", 1)]:
        pieces += w(e)
    reasoning = "".join(t for k, t in pieces if k == "reasoning")
    assert "**Step 1**" in reasoning and "print(1+1)" in reasoning
    assert "Observation:\n2" in reasoning
    assert [t for k, t in pieces if k == "content"] == ["2"]
    voting = StepWriter(votes=3)
    assert voting(ev.Token(1, 1, "x")) == []
    text = "".join(t for _, t in voting(ev.Observation(1, "t", "print(2)", "obs")))
    assert "```py\nprint(2)\n```" in text


def test_admission_queue_bounds_and_503() -> None:
    async def go() -> None:
        adm = Admission(parallel=1, max_queue=1)
        a = adm.reserve()
        await a.acquire()
        b = adm.reserve()
        with pytest.raises(APIError) as info:
            adm.reserve()
        assert info.value.status == 503 and info.value.code == "queue_full"
        waiter = asyncio.ensure_future(b.acquire())
        await asyncio.sleep(0)
        assert (adm.running, adm.waiting) == (1, 1) and not waiter.done()
        a.release()
        a.release()  # idempotent
        await waiter
        assert (adm.running, adm.waiting) == (1, 0)
        c = adm.reserve()
        c.release()  # gave up while queued
        b.release()
        assert (adm.running, adm.waiting) == (0, 0)

    asyncio.run(go())


def test_serve_refuses_a_public_bind_without_a_key() -> None:
    r = subprocess.run([sys.executable, "-m", "edgeagent", "serve", "--host", "0.0.0.0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.startswith("edgeagent: error: binding 0.0.0.0") and "--api-key" in r.stderr
    assert "Traceback" not in r.stderr


class _FakeHost:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log
        log.append(f"load {name}")

    def close(self) -> None:
        self.log.append(f"close {self.name}")


def test_offered_models_switch_after_running_requests_and_recover_from_a_bad_load() -> None:
    import threading

    from edgeagent.errors import UserError
    from edgeagent.serve.offered import OfferedModels

    log: list[str] = []

    def load(name: str) -> _FakeHost:
        if name == "broken":
            raise UserError("model file not found: /x.gguf")
        return _FakeHost(name, log)

    offered = OfferedModels(load("a"), load, names=lambda: ["a", "b", "broken"])  # type: ignore[arg-type]
    assert offered.names() == ["a", "b", "broken"] and offered.knows("b")
    assert not offered.knows("c")
    inside = threading.Event()
    release = threading.Event()

    def hold_a() -> None:
        with offered.use("a") as host:
            assert host.name == "a"
            inside.set()
            release.wait(5)
            log.append("a done")

    t = threading.Thread(target=hold_a)
    t.start()
    inside.wait(5)
    got: list[str] = []
    s = threading.Thread(target=lambda: got.append(_use_name(offered, "b")))
    s.start()
    s.join(0.3)
    assert s.is_alive() and "close a" not in log  # the switch waits for the running request
    release.set()
    t.join(5)
    s.join(5)
    assert got == ["b"] and log[-3:] == ["a done", "close a", "load b"]
    assert offered.names()[0] == "b"
    with pytest.raises(APIError) as err:
        _use_name(offered, "broken")
    assert err.value.status == 503 and "model file not found" in str(err.value)
    assert offered.current.name == "b" and log[-2:] == ["close b", "load b"]
    fixed = OfferedModels(_FakeHost("only", log))  # type: ignore[arg-type]
    assert fixed.names() == ["only"] and not fixed.knows("b")


def _use_name(offered: object, name: str) -> str:
    with offered.use(name) as host:  # type: ignore[attr-defined]
        return str(host.name)


def test_request_engine_passes_the_agents_kept_prefix_to_its_engine() -> None:
    """The agent keeps its system prompt through the request's engine view: an engine
    that keeps prefixes gets the call (and its cost back); one without keeps nothing."""
    from edgeagent.serve.hosts import RequestEngine, TokenCounter

    class Keeping:
        def __init__(self) -> None:
            self.kept: list[tuple[object, str | None]] = []

        def keep_prefix(self, prompt: object, *, before: str | None = None) -> int:
            self.kept.append((prompt, before))
            return 7

    keeping = Keeping()
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    assert RequestEngine(keeping, TokenCounter(), "m").keep_prefix(msgs, before="Q") == 7
    assert keeping.kept == [(msgs, "Q")]
    assert RequestEngine(object(), TokenCounter(), "m").keep_prefix(msgs, before="Q") == 0
