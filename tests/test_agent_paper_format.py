"""Compatibility with the paper: prompt text, and a released trajectory
(smolagents `log_data`) renders to the same chat as our loop for the same steps."""

from __future__ import annotations

from typing import Any

from test_agent import ScriptedEngine, fake_search

from edgeagent.agent.loop import Agent
from edgeagent.agent.paper_format import log_data_messages
from edgeagent.agent.parse import parse_action
from edgeagent.agent.prompts import load_prompts, merge_roles

QUESTION = "What is the capital of France?"
STEP1 = 'Thought: I will search.\nCode:\n```py\nr = web_search("capital of France")\nprint(r)\n```'
STEP2 = "Thought: Count.\nCode:\n```py\nprint('half')\n1/0\n```"
STEP3 = 'Thought: Done.\nCode:\n```py\nfinal_answer("Paris")\n```'
RETRY = ("Now let's retry: take care not to repeat previous errors! If you have retried "
         "several times, try a completely different approach.\n")
DOCS = ('\nRetrieved documents:\n\n===== Document 0, similarity: 0.55 =====\n"Paris"\n'
        "Paris is the capital of France.")


def _text(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": [{"type": "text", "text": text}]}


def released_log_data() -> dict[str, Any]:
    """A trajectory as the reference CodeAgent saved it (`save_memory_to_logs`)."""
    p = load_prompts()
    calls = lambda k, code: _text(  # noqa: E731
        "tool-call", "Calling tools:\n" + str([{"id": f"call_{k}", "type": "function", "function": {
            "name": "python_interpreter", "arguments": code}}]))
    return {
        "messages": [
            _text("system", p.system("student")),
            _text("user", "New task:\n" + QUESTION + p.task_suffix),
            _text("assistant", STEP1 + "<end_code>"),
            calls(1, 'r = web_search("capital of France")\nprint(r)'),
            _text("tool-response", "Call id: call_1\nObservation:\nExecution logs:\n"
                  + DOCS + "\nLast output from code snippet:\nNone"),
            {"role": "MessageRole.ASSISTANT", "content": STEP2 + "<end_code>"},
            calls(2, "print('half')\n1/0"),
            _text("tool-response", "Call id: call_2\nObservation:\nExecution logs:\nhalf\n"),
            _text("tool-response", "Call id: call_2\nError:\nCode execution failed at line "
                  "'1/0' due to: ZeroDivisionError: division by zero\n" + RETRY),
            _text("assistant", STEP3 + "<end_code>"),
            calls(3, 'final_answer("Paris")'),
            _text("tool-response", "Call id: call_3\nObservation:\nExecution logs:\n"
                  "Last output from code snippet:\nParis"),
        ]
    }


def test_released_trajectory_and_our_loop_give_the_same_chat() -> None:
    traj = Agent(ScriptedEngine([STEP1, STEP2, STEP3]), search=fake_search).run(QUESTION)
    assert traj.answer == "Paris"
    assert traj.messages == log_data_messages(released_log_data())


def test_reference_removed_from_task_and_roles_normalised() -> None:
    log = {"messages": [
        {"role": "MessageRole.SYSTEM", "content": "sys"},
        {"role": "MessageRole.USER", "content": "New task:\nQ<reference>\nsecret</reference>"},
        {"role": "MessageRole.ASSISTANT", "content": "a"},
        {"role": "MessageRole.TOOL_CALL", "content": "Calling tools:\n[]"},
        {"role": "MessageRole.TOOL_RESPONSE", "content": "obs"},
    ]}
    assert log_data_messages(log) == [
        {"role": "system", "content": "sys"}, {"role": "user", "content": "New task:\nQ"},
        {"role": "assistant", "content": "a"},
    ]


def test_prompts_match_the_reference_text() -> None:
    p = load_prompts()
    student = p.system("student")
    assert student.startswith("You are an expert assistant who can solve any task using code "
                              "blobs.")
    assert student.endswith("Now Begin! If you solve the task correctly, you will receive a "
                            "reward of $1,000,000.")
    assert ("\n- web_search: Uses semantic search to retrieve the parts of 2018 wikipedia that "
            "could be most relevant to answer your query.\n    Takes inputs: {'query': {'type': "
            "'string', 'description': 'The query to perform.") in student
    assert "\n- final_answer: Provides a final answer to the given problem.\n    Takes inputs: " \
           "{'answer': {'type': 'any', 'description': 'The final answer to the problem'}}\n" \
           "    Returns an output of type: any\n" in student
    assert "Here are a few examples using notional tools" not in student
    teacher = p.system("teacher")
    assert "Here are a few examples using notional tools" in teacher and len(teacher) > 8000
    assert "'numpy'" in teacher and "'sympy'" in teacher
    assert p.task("Q") == ("New task:\nQ\n\nIMPORTANT: Always provide a 'Thought:' sequence, and "
                           "a 'Code:\n```py' sequence ending with '```<end_code>' sequence, else "
                           "you will fail. For math problems that are not multiple-choice, always "
                           "output the final answer using LaTeX \\boxed{} format. Provide the "
                           "exact value (e.g., \\boxed{\\frac{9}{14}}), not a decimal "
                           "approximation (e.g., \\boxed{0.642857}).")
    assert p.version


def test_merge_roles_concatenates_like_the_reference() -> None:
    assert merge_roles([{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                        {"role": "assistant", "content": "c"}]) == [
        {"role": "user", "content": "ab"}, {"role": "assistant", "content": "c"}]


def test_parse_thought_and_code() -> None:
    a = parse_action("Thought: look it up\nCode:\n```py\nx = 1\n```\n")
    assert (a.thought, a.code, a.error) == ("look it up", "x = 1", None)
    b = parse_action("Thought: t\nCode:\n```py\nx = 1\n```<end_code>trailing")
    assert b.code == "x = 1"
