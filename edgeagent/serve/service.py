"""What the HTTP layer serves: the offered models, wikis, the queue, settings.

`Service` maps a requested model name to an offered model and a mode (`NAME` →
the agent, `NAME:chat` → the plain model; 404 otherwise; `offered` loads it),
opens wiki indexes on first use
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
from edgeagent.serve.offered import OfferedModels
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
    def __init__(self, models: EngineHost | OfferedModels, settings: ServeSettings) -> None:
        self.models = models if isinstance(models, OfferedModels) else OfferedModels(models)
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
        return [n + suffix for n in self.models.names() for suffix in ("", CHAT_SUFFIX)]

    def resolve(self, model: str) -> tuple[str, Mode]:
        """(offered model name, mode) for a requested model id; 404 if not offered."""
        if model.endswith(CHAT_SUFFIX) and self.models.knows(model[: -len(CHAT_SUFFIX)]):
            return model[: -len(CHAT_SUFFIX)], "chat"
        if self.models.knows(model):
            return model, "agent"
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
        name, mode = self.resolve(req.model)
        search = self.search_for(req) if mode == "agent" else None
        return Job(self.models, name, req, mode, search=search, defaults=self.settings.defaults)

    def health(self) -> dict[str, Any]:
        adm = self.admission
        host = self.models.current
        return {"status": "ok", "model": host.name, "models": self.model_names(),
                "engines": host.info().get("engines"), "parallel": adm.parallel,
                "max_queue": adm.max_queue, "running": adm.running, "queued": adm.waiting,
                "tokens_generated": host.counter.value}


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
