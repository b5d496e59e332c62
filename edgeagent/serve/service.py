"""What the HTTP layer serves: the loaded model, its names, wikis, the queue, settings.

`Service` maps a requested model name to a mode (`NAME` → the agent,
`NAME:chat` → the plain model; 404 otherwise), opens wiki indexes on first use
(cached; the server's `--wiki` unless a request names another, `false` for
none), and counts what `/health` reports. Not covered: the routes (`app`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from edgeagent.errors import UserError
from edgeagent.serve.admission import Admission
from edgeagent.serve.errors import APIError
from edgeagent.serve.hosts import EngineHost
from edgeagent.serve.jobs import AgentDefaults, Job, Mode
from edgeagent.serve.request import ChatRequest

CHAT_SUFFIX = ":chat"


@dataclass
class ServeSettings:
    api_key: str | None = None
    parallel: int = 1
    max_queue: int = 8
    reasoning_field: str = "reasoning_content"
    cors_origins: list[str] = field(default_factory=list)  # empty: localhost only
    wiki: str | None = "starter"  # None: no web_search
    max_votes: int = 8  # KV sequences per slot
    defaults: AgentDefaults = field(default_factory=AgentDefaults)


class Service:
    def __init__(self, host: EngineHost, settings: ServeSettings) -> None:
        self.host = host
        self.settings = settings
        self.created = int(time.time())
        self._admission: Admission | None = None
        self._wikis: dict[str, Any] = {}
        self._wiki_lock = threading.Lock()

    @property
    def admission(self) -> Admission:
        # created lazily: its semaphore belongs to the server's event loop
        if self._admission is None:
            self._admission = Admission(self.settings.parallel, self.settings.max_queue)
        return self._admission

    def model_names(self) -> list[str]:
        return [self.host.name, self.host.name + CHAT_SUFFIX]

    def mode_for(self, model: str) -> Mode:
        if model == self.host.name:
            return "agent"
        if model == self.host.name + CHAT_SUFFIX:
            return "chat"
        raise APIError(404, f"the model {model!r} does not exist; this server offers "
                       + ", ".join(self.model_names()), param="model", code="model_not_found")

    def search_for(self, req: ChatRequest) -> Any:
        name = req.wiki if req.wiki_given else self.settings.wiki
        if not name or name.lower() in ("none", "off"):
            return None
        with self._wiki_lock:
            if name not in self._wikis:
                self._wikis[name] = open_wiki(name, param="wiki" if req.wiki_given else None)
            return self._wikis[name]

    def job(self, req: ChatRequest) -> Job:
        mode = self.mode_for(req.model)
        search = self.search_for(req) if mode == "agent" else None
        return Job(self.host, req, mode, search=search, defaults=self.settings.defaults)

    def health(self) -> dict[str, Any]:
        adm = self.admission
        return {"status": "ok", "model": self.host.name, "models": self.model_names(),
                "engines": self.host.info().get("engines"), "parallel": adm.parallel,
                "max_queue": adm.max_queue, "running": adm.running, "queued": adm.waiting,
                "tokens_generated": self.host.counter.value}


def open_wiki(name: str, *, param: str | None = None) -> Any:
    """`WikiIndex.search` for `name` (the starter index is built on first use)."""
    from edgeagent.wiki.index import WikiIndex

    try:
        if name == "starter":
            from edgeagent.wiki.starter import ensure_starter_index

            ensure_starter_index()
        return WikiIndex.open(name).search
    except UserError as exc:
        raise APIError(404 if param else 500, str(exc), param=param,
                       code="wiki_not_found" if param else None) from None
