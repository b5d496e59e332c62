r"""Gold-annotation trajectories: GSM8K calculator annotations as Thought/Code steps.

`gold_trajectory(example)` turns a GSM8K solution such as

    Natalia sold 48/2 = <<48/2=24>>24 clips in May.
    Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.
    #### 72

into a two-step agent trajectory in the paper's format: step 1 computes each
annotated quantity in Python (one variable per annotation, named from the words
after it, earlier results reused by name, the solution's sentences as
comments) and prints it; step 2 reads the observation and calls
`final_answer(r"\boxed{72}")`. Observations are what Python prints for that
code (the expressions are plain arithmetic, evaluated here after a character
whitelist), formatted as the agent loop formats them. Records are marked
`model: "gold-annotations"`, `engine: "gold"`, so they are never mistaken for
teacher output; `messages` use the student system prompt.

Raises `GoldError` (a `ValueError`) for an example it cannot convert: no
`#### N`, no annotation, or an annotation whose arithmetic disagrees with its
stated result.

`gsm8k_cot_trajectory(example)` is the chain-of-thought target of the same
example for a CoT student: the solution text without its annotations, then
`<answer> \\boxed{72} </answer>`, under the paper's CoT prompt (`cot_trajectory`,
also used for HotpotQA by `trainer.gold_qa`). `gsm8k_records` keeps the same examples
in both formats (one the agent format cannot use is skipped in the CoT format too).

Not covered: MATH-style solutions (no annotations), running code in the sandbox.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping
from typing import Any

from edgeagent.agent.prompts import load_prompts
from edgeagent.agent.trajectory import StepRecord, Trajectory
from edgeagent.scoring.extract import gsm8k_gold

GOLD_MODEL = "gold-annotations"
GOLD_ENGINE = "gold"

_ANNOTATION = re.compile(r"<<([^<>]*)>>")
_SAFE_EXPR = re.compile(r"[\d\s+\-*/().]+")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")
_STOP = {"a", "an", "the", "per", "and", "or", "to", "in", "of", "for", "is", "are", "so",
         "each", "times", "at", "on", "by", "from", "with", "more", "less", "than", "that",
         "this", "it", "he", "she", "they", "we", "was", "were", "will", "would", "which",
         "left", "total", "x", "as", "be", "has", "have", "his", "her", "their", "all"}
_RESERVED = set(keyword.kwlist) | {"print", "final_answer", "web_search", "sum", "min", "max",
                                   "round", "int", "float", "str", "len", "abs", "list"}


class GoldError(ValueError):
    """This example has no usable calculator annotations."""


def _format_number(text: str) -> str:
    """A Python literal for an annotation number (`05` -> `5`)."""
    if "." in text:
        whole, frac = text.split(".", 1)
        return f"{int(whole or '0')}.{frac}"
    return str(int(text))


def _name_after(text: str, used: set[str], k: int) -> str:
    words: list[str] = []
    for w in re.findall(r"[A-Za-z]+|\S", text[:60]):
        if not w.isalpha():
            if words:
                break
            continue
        w = w.lower()
        if w in _STOP:
            break
        words.append(w)
        if len(words) == 2:
            break
    name = "_".join(words) if words else f"value_{k}"
    if name in _RESERVED or not name.isidentifier():
        name = f"{name}_{k}"
    base, n = name, 2
    while name in used:
        name, n = f"{base}_{n}", n + 1
    return name


def _evaluate(expr: str) -> float | int:
    if not _SAFE_EXPR.fullmatch(expr) or "**" in expr:
        raise GoldError(f"annotation is not plain arithmetic: {expr!r}")
    try:
        value = eval(expr, {"__builtins__": {}}, {})  # digits and + - * / ( ) only
    except (SyntaxError, ZeroDivisionError, TypeError) as exc:
        raise GoldError(f"annotation does not compute: {expr!r} ({exc})") from None
    if not isinstance(value, (int, float)):
        raise GoldError(f"annotation does not compute: {expr!r}")
    return value


def _agrees(value: float, stated: str) -> bool:
    try:
        target = float(stated.replace(",", ""))
    except ValueError:
        return False
    return abs(value - target) <= max(1e-6, 1e-6 * abs(target)) or round(value, 2) == target


def assistant_text(thought: str, code: str) -> str:
    """One assistant turn in the agent's format."""
    return f"Thought: {thought}\nCode:\n```py\n{code}\n```<end_code>"


def gold_trajectory(
    example: Mapping[str, Any],
    *,
    task_id: str | None = None,
    dataset: str | None = "gsm8k",
) -> Trajectory:
    """The gold-annotation trajectory of one GSM8K example `{question, answer[, id]}`."""
    question = str(example.get("question", "")).strip()
    solution = str(example.get("answer", ""))
    gold = gsm8k_gold(solution)
    if not question or gold is None:
        raise GoldError("not a GSM8K example (needs question and an answer ending in #### N)")
    lines = [ln.strip() for ln in solution.rsplit("####", 1)[0].split("\n") if ln.strip()]
    code: list[str] = []
    stdout: list[str] = []
    results: dict[str, str] = {}  # stated result literal -> variable
    used: set[str] = set()
    env: dict[str, float | int] = {}
    last: tuple[str, float | int] | None = None
    k = 0
    for line in lines:
        comment = _ANNOTATION.sub("", line).strip()
        if comment:
            code.append(f"# {comment}")
        for m in _ANNOTATION.finditer(line):
            inner = m.group(1)
            if "=" not in inner:
                raise GoldError(f"annotation without a result: <<{inner}>>")
            expr, stated = (part.strip() for part in inner.rsplit("=", 1))
            value = _evaluate(expr)
            if not _agrees(float(value), stated):
                raise GoldError(f"annotation <<{inner}>> computes {value}, not {stated}")
            k += 1
            name = _name_after(line[m.end():].lstrip(" 0123456789.,$%"), used, k)
            used.add(name)
            py = _NUMBER.sub(lambda n: results.get(n.group(0), _format_number(n.group(0))), expr)
            py = re.sub(r"\s*([+\-*/])\s*", r" \1 ", py).strip()
            try:  # what the snippet itself prints (48 / 2 is 24.0 in Python)
                value = eval(py, {"__builtins__": {}}, dict(env))
            except (SyntaxError, ZeroDivisionError, NameError, TypeError) as exc:
                raise GoldError(f"annotation does not compute: {expr!r} ({exc})") from None
            env[name] = value
            code.append(f"{name} = {py}")
            code.append(f'print("{name} =", {name})')
            stdout.append(f"{name} = {value}\n")
            results[stated] = name
            last = (name, value)
    if last is None:
        raise GoldError("no calculator annotations (<<a*b=c>>) in the solution")
    prompts = load_prompts()
    thought1 = ("I will compute each quantity of the problem step by step in Python "
                "and print the results.")
    text1 = assistant_text(thought1, "\n".join(code))
    observation1 = (f"Call id: call_1\nObservation:\nExecution logs:\n{''.join(stdout)}"
                    "Last output from code snippet:\nNone")
    answer = f"\\boxed{{{gold}}}"
    thought2 = (f"The computation gives {last[0]} = {last[1]}, so the final answer is {gold}.")
    code2 = f'final_answer(r"{answer}")'
    text2 = assistant_text(thought2, code2)
    steps = [
        StepRecord(thought=thought1, code="\n".join(code), observation=observation1, text=text1),
        StepRecord(thought=thought2, code=code2, final=True, final_answer=answer, text=text2,
                   observation=("Call id: call_2\nObservation:\nExecution logs:\n"
                                f"Last output from code snippet:\n{answer}")),
    ]
    messages = [
        {"role": "system", "content": prompts.system("student")},
        {"role": "user", "content": prompts.task(question)},
        {"role": "assistant", "content": text1},
        {"role": "user", "content": observation1},
        {"role": "assistant", "content": text2},
    ]
    tid = task_id or str(example.get("id") or "") or None
    if tid is None:
        import hashlib

        tid = "gold-" + hashlib.sha1(question.encode("utf-8")).hexdigest()[:12]
    return Trajectory(
        id=tid, question=question, model=GOLD_MODEL, engine=GOLD_ENGINE,
        prompt_version=prompts.version, steps=steps, answer=answer,
        messages=messages,  # type: ignore[arg-type]
        tokens={"prompt": 0, "completion": 0}, timings={}, gold=gold, dataset=dataset,
    )


def cot_trajectory(task_id: str, question: str, reasoning: str, answer: str, *, gold: Any,
                   dataset: str | None, model: str = GOLD_MODEL) -> Trajectory:
    """A one-turn CoT record: the eval's `cot` chat, answered with `reasoning` and the
    answer in the `<answer>` tag (where `edgeagent eval --mode cot` reads it)."""
    from edgeagent.eval.cot import load_cot_prompts

    prompts = load_cot_prompts()
    reply = f"{reasoning.strip()}\n<answer> {answer} </answer>"
    step = StepRecord(thought=reply, code=None, observation="", final=True,
                      final_answer=answer, text=reply)
    messages = [{"role": "system", "content": prompts.systems["cot"]},
                {"role": "user", "content": question},
                {"role": "assistant", "content": reply}]
    return Trajectory(
        id=task_id, question=question, model=model, engine=GOLD_ENGINE,
        prompt_version=f"{prompts.version}:cot", steps=[step], answer=answer,
        messages=messages,  # type: ignore[arg-type]
        tokens={"prompt": 0, "completion": 0}, timings={}, gold=gold, dataset=dataset,
    )


def gsm8k_cot_trajectory(example: Mapping[str, Any], *, task_id: str,
                         dataset: str | None = "gsm8k") -> Trajectory:
    """The CoT target of one GSM8K example: its solution without `<<…>>` annotations."""
    question = str(example.get("question", "")).strip()
    solution = str(example.get("answer", ""))
    gold = gsm8k_gold(solution)
    if not question or gold is None or "####" not in solution:
        raise GoldError("not a GSM8K example (needs question and an answer ending in #### N)")
    lines = [" ".join(_ANNOTATION.sub("", ln).split())
             for ln in solution.rsplit("####", 1)[0].split("\n")]
    reasoning = "\n".join(ln for ln in lines if ln)
    if not reasoning:
        raise GoldError("the solution has no reasoning before ####")
    return cot_trajectory(task_id, question, reasoning, f"\\boxed{{{gold}}}", gold=gold,
                          dataset=dataset)


def gsm8k_records(examples: list[Any], *, stem: str, fmt: str = "agent"
                  ) -> tuple[list[Trajectory], list[str]]:
    """Gold records (`fmt` "agent" or "cot") of GSM8K examples, and "<id>: <reason>" for
    each example that gives none. Both formats keep the same examples: one without a
    usable annotation is skipped in the CoT format too."""
    records: list[Trajectory] = []
    skipped: list[str] = []
    for n, ex in enumerate(examples):
        if not isinstance(ex, Mapping):
            skipped.append(f"{stem}:{n}: not a JSON object")
            continue
        task_id = str(ex.get("id") or f"{stem}:{n}")
        try:
            # the CoT set keeps exactly the questions the agent set keeps, so two students
            # trained on the two formats of one file learn from the same questions
            agent = gold_trajectory(ex, task_id=task_id, dataset="gsm8k")
            records.append(agent if fmt == "agent" else
                           gsm8k_cot_trajectory(ex, task_id=task_id, dataset="gsm8k"))
        except GoldError as exc:
            skipped.append(f"{stem}:{n}: {exc}")
    return records, skipped
