"""Gold HotpotQA trajectories from supporting facts and a local index (no LLM teacher).

    builder = GoldQA(WikiIndex.open("multihop").search)
    agent, cot = builder.build(example)        # or GoldError with the reason it was dropped

An example names its supporting pages: HotpotQA's own `supporting_facts`
(`[[title, sentence index], …]` with `context` `[[title, [sentences]]]`, or
the Hugging Face datasets layout of the same) or `gold_titles` (as in
`retrieval/hotpotqa_gold_titles.jsonl`). The agent trajectory looks each page
up in turn: a page the question names first, the page another page leads to
(the bridge entity) and the answer's own page later:

    Thought: I need to find information about X. I will search for it.
    Code: results = web_search(query="X") / print(results)
    Observation: the index's real top-3 for that query, as the agent loop formats it
    Thought: From the results: <supporting sentences>. Now I need … / So the answer is A.
    Code: final_answer("A")

A trajectory is kept only when every search really returns its supporting page
(a hit with that title in the top 3) and, unless the answer is yes/no, the
answer occurs in the returned passages; otherwise `GoldError` says which check
failed (`reason`), so `distill gold` reports how many survive and why not.
Supporting sentences are the example's own `supporting_facts` when it has
them, else the sentences of the returned passage that hold the answer or the
next page's title (the first sentence when none does).

`--format cot` (`cot`) is the matching chain-of-thought record: the same
supporting sentences as reasoning, then `<answer> A </answer>`, under the
paper's CoT prompt; it is built only for questions whose agent trajectory
survives, so both students learn from the same questions and facts.

Not covered: other multi-hop sets (MuSiQue, 2Wiki: their decompositions
differ), paraphrased queries (the query is the page title).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgeagent.agent.prompts import load_prompts
from edgeagent.agent.trajectory import StepRecord, Trajectory
from edgeagent.scoring import normalize_answer
from edgeagent.tools.sandbox.result import ExecResult, format_observation
from edgeagent.wiki.passages import Passage
from edgeagent.wiki.tool import format_web_search
from trainer.gold import GOLD_ENGINE, GoldError, assistant_text, cot_trajectory

GOLD_QA_MODEL = "gold-supporting-facts"
SEARCH_K = 3  # the agent loop's `AgentConfig.search_k`
SearchFn = Callable[[str, int], list[Passage]]
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_MAX_SENTENCES = 2
_ABBREV = r"(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Inc|Co|Ltd|Gen|Col|Lt|Sgt|Capt|Gov|Rev|Prof|No|vs|Mt|Ft)\."


class GoldQaError(GoldError):
    """This example gives no gold trajectory; `reason` is its short report label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class QaExample:
    id: str
    question: str
    answer: str
    titles: list[str]
    facts: dict[str, list[str]] | None  # title -> supporting sentences, when given


def _norm_title(title: str) -> str:
    return " ".join(title.lower().split())


def _facts(example: Mapping[str, Any]) -> tuple[list[str], dict[str, list[str]]] | None:
    """Titles and supporting sentences from HotpotQA's `supporting_facts` + `context`."""
    sf, ctx = example.get("supporting_facts"), example.get("context")
    if not sf or not ctx:
        return None
    if isinstance(sf, Mapping):  # datasets layout: {"title": [...], "sent_id": [...]}
        sf = list(zip(sf.get("title", []), sf.get("sent_id", []), strict=False))
    if isinstance(ctx, Mapping):  # {"title": [...], "sentences": [[...]]}
        ctx = list(zip(ctx.get("title", []), ctx.get("sentences", []), strict=False))
    sentences = {str(t): [str(x) for x in s] for t, s in ctx}
    titles: list[str] = []
    facts: dict[str, list[str]] = {}
    for title, idx in sf:
        title = str(title)
        if title not in titles:
            titles.append(title)
        sents = sentences.get(title, [])
        if isinstance(idx, int) and 0 <= idx < len(sents) and sents[idx].strip():
            facts.setdefault(title, []).append(sents[idx].strip())
    return titles, facts


def qa_example(example: Mapping[str, Any], task_id: str) -> QaExample:
    """The question, answer and supporting pages of one example (`GoldQaError` if none)."""
    question = str(example.get("question") or "").strip()
    answer = example.get("answer")
    if isinstance(answer, list):
        answer = answer[0] if answer else None
    answer = str(answer).strip() if answer is not None else ""
    if not question or not answer:
        raise GoldQaError("unusable", "needs a question and an answer")
    found = _facts(example)
    if found is not None:
        titles, facts = found
        given: dict[str, list[str]] | None = facts
    else:
        titles = [str(t) for t in example.get("gold_titles") or [] if str(t).strip()]
        given = None
    if not titles:
        raise GoldQaError("unusable", "no supporting_facts or gold_titles")
    return QaExample(str(example.get("id") or task_id), question, answer, titles, given)


def _hit(passages: Sequence[Passage], title: str) -> Passage | None:
    want = _norm_title(title)
    return next((p for p in passages if _norm_title(p.title) == want), None)


def _sentences(text: str) -> list[str]:
    """Sentences of a passage; no cut after an initial ("Gerald R. Ford") or a title."""
    out: list[str] = []
    start = 0
    text = text.strip()
    for m in _SENTENCE.finditer(text):
        head = text[start:m.start()].strip()
        word = head.rsplit(None, 1)[-1].lstrip("\"'(“‘") if head else ""
        if re.fullmatch(r"[A-Z]\.|(?:[A-Z]\.)+|" + _ABBREV, word):
            continue
        out.append(text[start:m.start()].strip())
        start = m.end()
    out.append(text[start:].strip())
    return [s for s in out if s]


def _evidence(hit: Passage, answer: str, next_title: str | None) -> list[str]:
    """Sentences of the returned passage that carry the answer or lead to the next page."""
    keys = [normalize_answer(k) for k in (answer, next_title or "") if normalize_answer(k)]
    sents = _sentences(hit.text)
    picked = [s for s in sents if any(k in normalize_answer(s) for k in keys)]
    return (picked or sents[:1])[:_MAX_SENTENCES]


def _hop_order(ex: QaExample, found: list[tuple[str, list[Passage], Passage]]
               ) -> list[tuple[str, list[Passage], Passage]]:
    """The order a reader would look the pages up in: a page the question names first;
    the answer's own page, and a page another page leads to (the bridge), later."""
    q = normalize_answer(ex.question)
    q_words = set(q.split())
    answer = normalize_answer(ex.answer)

    def key(item: tuple[int, tuple[str, list[Passage], Passage]]) -> tuple[Any, ...]:
        i, (title, _, _) = item
        t = normalize_answer(title)
        is_answer = bool(answer) and (t == answer or answer in t)
        named = bool(t) and t in q
        led_to = any(t and t in normalize_answer(hit.text)
                     for other, _, hit in found if other != title)
        return (is_answer, not named and led_to, not named, -len(set(t.split()) & q_words), i)

    return [f for _, f in sorted(enumerate(found), key=key)]


def _yes_no(answer: str) -> bool:
    return normalize_answer(answer) in ("yes", "no")


class GoldQA:
    """Builds gold agent and CoT trajectories with one search function."""

    def __init__(self, search: SearchFn, *, dataset: str = "hotpotqa") -> None:
        self.search = search
        self.dataset = dataset
        self.prompts = load_prompts()

    def build(self, example: Mapping[str, Any], task_id: str) -> tuple[Trajectory, Trajectory]:
        """(agent trajectory, CoT trajectory) of one example, or `GoldQaError`."""
        ex = qa_example(example, task_id)
        found: list[tuple[str, list[Passage], Passage]] = []
        for title in ex.titles:
            passages = self.search(title, SEARCH_K)
            hit = _hit(passages, title)
            if hit is None:
                raise GoldQaError("search missed a supporting page",
                                  f"web_search({title!r}) does not return {title!r}")
            found.append((title, passages, hit))
        found = _hop_order(ex, found)
        ex = QaExample(ex.id, ex.question, ex.answer, [t for t, _, _ in found], ex.facts)
        seen = " ".join(normalize_answer(p.text) for _, ps, _ in found for p in ps)
        if not _yes_no(ex.answer) and normalize_answer(ex.answer) not in seen:
            raise GoldQaError("answer not in the passages",
                              f"{ex.answer!r} is in none of the returned passages")
        evidence: list[list[str]] = []
        for i, (title, _, hit) in enumerate(found):
            nxt = ex.titles[i + 1] if i + 1 < len(ex.titles) else None
            given = (ex.facts or {}).get(title)
            evidence.append(given or _evidence(hit, ex.answer, nxt))
        return self._agent(ex, found, evidence), cot_trajectory(
            ex.id, ex.question, " ".join(s for ev in evidence for s in ev), ex.answer,
            gold=ex.answer, dataset=self.dataset, model=GOLD_QA_MODEL)

    def _agent(self, ex: QaExample, found: list[tuple[str, list[Passage], Passage]],
               evidence: list[list[str]]) -> Trajectory:
        messages: list[dict[str, str]] = [
            {"role": "system", "content": self.prompts.system("student")},
            {"role": "user", "content": self.prompts.task(ex.question)},
        ]
        steps: list[StepRecord] = []
        for k, (title, passages, _) in enumerate(found, 1):
            query = json.dumps(title, ensure_ascii=False)
            if k == 1:
                thought = f"I need to find information about {title}. I will search for it."
            else:
                thought = (f"From the results: {' '.join(evidence[k - 2])} Now I need "
                           f"information about {title}. I will search for it.")
            code = f"results = web_search(query={query})\nprint(results)"
            result = ExecResult(stdout=format_web_search(passages) + "\n")
            observation = format_observation(result, k)
            text = assistant_text(thought, code)
            steps.append(StepRecord(thought=thought, code=code, observation=observation,
                                    text=text))
            messages += [{"role": "assistant", "content": text},
                         {"role": "user", "content": observation}]
        last = len(found) + 1
        thought = f"From the results: {' '.join(evidence[-1])} So the answer is {ex.answer}."
        code = f"final_answer({json.dumps(ex.answer, ensure_ascii=False)})"
        text = assistant_text(thought, code)
        final_obs = format_observation(ExecResult(last_value_str=ex.answer), last)
        steps.append(StepRecord(thought=thought, code=code, observation=final_obs, final=True,
                                final_answer=ex.answer, text=text))
        messages.append({"role": "assistant", "content": text})
        return Trajectory(
            id=ex.id, question=ex.question, model=GOLD_QA_MODEL, engine=GOLD_ENGINE,
            prompt_version=self.prompts.version, steps=steps, answer=ex.answer,
            messages=messages,  # type: ignore[arg-type]
            tokens={"prompt": 0, "completion": 0}, timings={}, gold=ex.answer,
            dataset=self.dataset,
        )


@dataclass
class GoldQaReport:
    total: int = 0
    kept: int = 0
    excluded: int = 0
    dropped: dict[str, int] | None = None
    first: dict[str, str] | None = None  # reason -> first example's detail

    def drop(self, exc: GoldQaError, task_id: str) -> None:
        self.dropped = self.dropped or {}
        self.first = self.first or {}
        self.dropped[exc.reason] = self.dropped.get(exc.reason, 0) + 1
        self.first.setdefault(exc.reason, f"{task_id}: {exc.detail}")

    def lines(self) -> list[str]:
        out = [f"{self.kept} of {self.total} questions survive"
               + (f" ({self.excluded} excluded before)" if self.excluded else "")]
        for reason, n in sorted((self.dropped or {}).items(), key=lambda x: -x[1]):
            out.append(f"  dropped {n:>5}  {reason}, e.g. {(self.first or {})[reason]}")
        return out


def gold_qa_records(
    examples: Sequence[Any], search: SearchFn, *, fmt: str = "agent", stem: str = "hotpotqa",
    exclude: set[str] | None = None, dataset: str = "hotpotqa",
) -> tuple[list[Trajectory], GoldQaReport]:
    """The surviving examples' records (`fmt` "agent" or "cot") and the survival report.

    `exclude` holds ids and normalised questions to leave out (an eval set)."""
    builder = GoldQA(search, dataset=dataset)
    report = GoldQaReport()
    records: list[Trajectory] = []
    for n, raw in enumerate(examples):
        task_id = f"{stem}:{n}"
        if not isinstance(raw, Mapping):
            report.total += 1
            report.drop(GoldQaError("unusable", "not a JSON object"), task_id)
            continue
        if exclude and (str(raw.get("id")) in exclude
                        or " ".join(str(raw.get("question", "")).lower().split()) in exclude):
            report.excluded += 1
            continue
        report.total += 1
        try:
            agent, cot = builder.build(raw, task_id)
        except GoldQaError as exc:
            report.drop(exc, str(raw.get("id") or task_id))
            continue
        records.append(agent if fmt == "agent" else cot)
        report.kept += 1
    return records, report


def exclusion_keys(examples: Sequence[Any]) -> set[str]:
    """Ids and normalised questions of an eval set, for `gold_qa_records(exclude=…)`."""
    keys: set[str] = set()
    for ex in examples:
        if isinstance(ex, Mapping):
            if ex.get("id") not in (None, ""):
                keys.add(str(ex["id"]))
            if ex.get("question"):
                keys.add(" ".join(str(ex["question"]).lower().split()))
    return keys
