"""`OpenAIEngine`: any OpenAI-compatible server over HTTP (teachers, judges).

Works with vLLM, llama.cpp's server, llama-cpp-python's server and hosted
APIs. Servers differ, so every feature has a fallback any server accepts:

- `n > 1`: asked for in one request; if the server returns fewer choices
  (llama.cpp servers ignore `n`), the rest come from separate requests with
  seeds `seed + i`.
- assistant prefill (`prefix`, the first-thought prefix): with a chat template
  (given, or read from a GGUF), the prompt is rendered here and sent to
  `/completions`, which every server continues verbatim; without one, the
  chat request carries vLLM's `continue_final_message`.
- retries with exponential backoff (honouring `Retry-After`) on connection
  errors, timeouts, 429 and 5xx; every other failure is one clear line.
- streaming (`on_token`) for n = 1 over server-sent events.

Not covered: tool-call APIs, logprobs, embeddings.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from edgeagent.engines.base import (
    Completion,
    FinishReason,
    Message,
    Timings,
    TokenCallback,
    find_stop,
)
from edgeagent.engines.chat_template import render_chat
from edgeagent.errors import UserError

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIEngine:
    """A model behind an OpenAI-compatible `/v1` endpoint."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        chat_template: str | None = None,
        bos_token: str = "",
        eos_token: str = "",
        timeout_s: float = 600.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = base_url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise UserError(f"teacher URL must start with http:// or https://: {base_url}")
        if not url.endswith("/v1"):
            url += "/v1"
        self.base_url = url
        self.model = model
        self.template = chat_template
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.retries = retries
        self.backoff_s = backoff_s
        key = api_key or os.environ.get("EDGEAGENT_API_KEY") or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            base_url=url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0),
            transport=transport,
        )
        self.name = model or url

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP with retries ---------------------------------------------------

    def _request(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        last = ""
        for attempt in range(self.retries + 1):
            try:
                resp = self._client.post(path, json=payload)
            except httpx.TransportError as exc:
                last = f"cannot reach {self.base_url}: {exc or type(exc).__name__}"
            else:
                if resp.status_code < 400:
                    return resp
                if resp.status_code not in RETRY_STATUS:
                    raise UserError(
                        f"{self.base_url}{path} answered {resp.status_code}: {_error_text(resp)}"
                    )
                last = f"{self.base_url}{path} answered {resp.status_code}: {_error_text(resp)}"
                after = resp.headers.get("retry-after", "")
                if after.replace(".", "", 1).isdigit() and attempt < self.retries:
                    time.sleep(min(float(after), 30.0))
                    continue
            if attempt < self.retries:
                time.sleep(self.backoff_s * (2**attempt) * (1 + random.random() / 4))
        raise UserError(f"{last} (after {self.retries + 1} attempts)", exit_code=3)

    def _model_name(self) -> str:
        if self.model:
            return self.model
        try:
            resp = self._client.get("/models")
            data = resp.json().get("data") or []
            if resp.status_code < 400 and data:
                self.model = str(data[0]["id"])
                return self.model
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
            pass
        self.model = "default"
        return self.model

    # -- generation ------------------------------------------------------------

    def generate(
        self,
        messages: Sequence[Message] | str,
        *,
        n: int = 1,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_tokens: int = 512,
        stop: Sequence[str] = (),
        seed: int | None = None,
        prefix: str | None = None,
        on_token: TokenCallback | None = None,
    ) -> list[Completion]:
        if n < 1:
            raise UserError("n must be at least 1")
        common: dict[str, Any] = {
            "model": self._model_name(), "temperature": temperature, "top_p": top_p,
            "max_tokens": max_tokens,
        }
        if stop:
            common["stop"] = list(stop)
        use_completions = isinstance(messages, str) or (prefix is not None and bool(self.template))
        body: dict[str, Any]
        if isinstance(messages, str) or use_completions:
            prompt = messages if isinstance(messages, str) else render_chat(
                self.template, messages, bos_token=self.bos_token, eos_token=self.eos_token,
                prefix=prefix,
            )
            if isinstance(messages, str) and prefix:
                prompt += prefix
            path, body = "/completions", {**common, "prompt": prompt}
        else:
            chat = [{"role": m["role"], "content": m["content"]} for m in list(messages)]
            body = {**common, "messages": chat}
            if prefix is not None:
                chat.append({"role": "assistant", "content": prefix})
                body.update(continue_final_message=True, add_generation_prompt=False)
            path = "/chat/completions"
        results: list[Completion] = []
        while len(results) < n:
            want = n - len(results)
            req = {**body, "n": want}
            if seed is not None:
                req["seed"] = seed + len(results)
            t0 = time.perf_counter()
            if on_token is not None and want == 1:
                got = self._stream(path, req, on_token, len(results), list(stop))
            else:
                got = self._parse(self._request(path, req).json(), path)
            dt = time.perf_counter() - t0
            if not got:
                raise UserError(f"{self.base_url}{path} returned no choices")
            for c in got[:want]:
                c.timings = Timings(total_s=dt, generate_s=dt)
                if prefix and not use_completions and c.text.startswith(prefix):
                    c.text = c.text[len(prefix):]  # some servers echo the prefill
                hit = find_stop(c.text, stop)
                if hit is not None:
                    c.text, c.stop, c.finish_reason = c.text[: hit[0]], hit[1], "stop"
            results.extend(got[:want])
        return results

    def _parse(self, data: Any, path: str) -> list[Completion]:
        try:
            usage = data.get("usage") or {}
            choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
            out = []
            for ch in choices:
                text = ch["text"] if path == "/completions" else (ch["message"]["content"] or "")
                out.append(Completion(
                    text=text, finish_reason=_finish(ch.get("finish_reason")),
                    prompt_tokens=int(usage.get("prompt_tokens", 0)),
                    completion_tokens=int(usage.get("completion_tokens", 0))
                    // max(1, len(choices)),
                ))
            return out
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise UserError(f"{self.base_url}{path} sent an unexpected reply ({exc})") from None

    def _stream(
        self, path: str, req: dict[str, Any], on_token: TokenCallback, index: int, stop: list[str]
    ) -> list[Completion]:
        req = {**req, "stream": True}
        text_parts: list[str] = []
        finish: FinishReason = "length"
        chunks = 0
        for attempt in range(self.retries + 1):
            try:
                with self._client.stream("POST", path, json=req) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        if resp.status_code in RETRY_STATUS and attempt < self.retries:
                            time.sleep(self.backoff_s * (2**attempt))
                            continue
                        raise UserError(f"{self.base_url}{path} answered {resp.status_code}: "
                                        f"{_error_text(resp)}")
                    for event in _sse_events(resp.iter_lines()):
                        for ch in event.get("choices") or []:
                            piece = ch.get("text") if path == "/completions" else (
                                (ch.get("delta") or {}).get("content"))
                            if piece:
                                text_parts.append(piece)
                                chunks += 1
                                on_token(index, piece)
                            if ch.get("finish_reason"):
                                finish = _finish(ch["finish_reason"])
                break
            except httpx.TransportError as exc:
                if text_parts or attempt >= self.retries:
                    raise UserError(
                        f"stream from {self.base_url} broke: {exc}", exit_code=3
                    ) from None
                time.sleep(self.backoff_s * (2**attempt))
        return [Completion(text="".join(text_parts), finish_reason=finish, prompt_tokens=0,
                           completion_tokens=chunks)]


def _sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            yield json.loads(data)
        except ValueError:
            continue


def _finish(reason: Any) -> FinishReason:
    return "length" if reason == "length" else "stop"


def _error_text(resp: httpx.Response) -> str:
    try:
        data = resp.json()
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = err.get("message") if isinstance(err, dict) else str(err)
        text = str(msg or data)
    except ValueError:
        text = resp.text
    text = " ".join(text.split())
    return text[:300] or resp.reason_phrase
