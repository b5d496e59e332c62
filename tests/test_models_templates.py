"""Chat templates of real model families: tiny random qwen2, qwen3 and llama GGUFs carrying
the formats of Qwen2.5, Qwen3 and Llama 3.2 (templates written for the tests, in
tests/data/chat_templates). The prompt llama.cpp's engine renders equals what
transformers renders, with the family's own parts (Qwen2.5's default system prompt,
Llama 3's headers); the agent loop runs a step on each; qwen3's `<think>` blocks never
reach the parsed code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_convert import _make_model, smollm2_gguf, tokenizer_files  # noqa: F401

from edgeagent.agent.parse import STOP_SEQUENCES, parse_action

TEMPLATES = Path(__file__).resolve().parent / "data" / "chat_templates"
FAMILIES = {"qwen2": "qwen2.5.jinja", "qwen3": "qwen3.jinja", "llama": "llama3.2.jinja"}
_BUILT: dict[str, Path] = {}


@pytest.fixture(scope="module")
def family_gguf(tokenizer_files: Path,  # noqa: F811
                tmp_path_factory: pytest.TempPathFactory) -> Any:
    """family_gguf(kind) -> (HF dir, GGUF): a tiny random model with its family's template."""
    from converters import convert_to_gguf

    def build(kind: str) -> tuple[Path, Path]:
        if kind not in _BUILT:
            root = tmp_path_factory.mktemp(f"family-{kind}")
            hf_dir = _make_model(kind, root / "hf", tokenizer_files)
            for old in ("chat_template.jinja",):
                (hf_dir / old).unlink(missing_ok=True)
            model_config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
            model_config["max_position_embeddings"] = 4096  # room for the agent's prompt
            (hf_dir / "config.json").write_text(json.dumps(model_config), encoding="utf-8")
            config = json.loads((hf_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
            config.pop("chat_template", None)
            (hf_dir / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
            shutil.copy(TEMPLATES / FAMILIES[kind], hf_dir / "chat_template.jinja")
            _BUILT[kind] = convert_to_gguf(hf_dir, root / f"{kind}.gguf", outtype="f16").path
        path = _BUILT[kind]
        return path.parent / "hf", path

    return build


def agent_messages() -> list[dict[str, str]]:
    """The agent's first chat: its real student system prompt and task turn."""
    from edgeagent.agent.prompts import load_prompts

    prompts = load_prompts()
    return [{"role": "system", "content": prompts.system("student")},
            {"role": "user", "content": prompts.task("What is 6 times 7?")}]


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_prompt_renders_as_transformers_renders_it(kind: str, family_gguf: Any) -> None:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("llama_cpp")
    from edgeagent.engines.llamacpp import LlamaCppEngine

    hf_dir, path = family_gguf(kind)
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    with LlamaCppEngine(path, n_ctx=512) as engine:
        for messages in (agent_messages(), agent_messages()[1:]):
            ours = engine.render(messages)
            theirs = tokenizer.apply_chat_template(messages, tokenize=False,
                                                   add_generation_prompt=True)
            assert ours == theirs
        bare = engine.render(agent_messages()[1:])
    if kind == "qwen2":  # no system message: Qwen2.5's own default
        assert bare.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")
    if kind == "llama":
        assert "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date:" in bare
        assert bare.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    if kind == "qwen3":
        assert bare.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_agent_loop_runs_a_step_on_each_family(kind: str, family_gguf: Any) -> None:
    pytest.importorskip("llama_cpp")
    from edgeagent.agent.loop import Agent, AgentConfig
    from edgeagent.engines.llamacpp import LlamaCppEngine

    _hf_dir, path = family_gguf(kind)
    seen: list[tuple[str, tuple[str, ...]]] = []
    with LlamaCppEngine(path, n_ctx=2048) as engine:
        real_generate = engine.generate

        def spy(messages: Any, **kw: Any) -> Any:
            seen.append((engine.render(messages) if not isinstance(messages, str)
                         else messages, tuple(kw.get("stop") or ())))
            return real_generate(messages, **kw)

        engine.generate = spy  # type: ignore[method-assign]
        config = AgentConfig(votes=1, max_steps=1, max_tokens=16, seed=1)
        traj = Agent(engine, search=None, config=config).run("What is 6 times 7?")
    assert traj.error is None and traj.steps and seen
    prompt, stops = seen[0]
    assert set(STOP_SEQUENCES) <= set(stops)  # the step ends at the paper's stop strings
    opener = {"llama": "<|start_header_id|>user<|end_header_id|>\n\n",
              "qwen2": "<|im_start|>user\n", "qwen3": "<|im_start|>user\n"}[kind]
    assert opener + "New task:\nWhat is 6 times 7?" in prompt


def test_qwen3_think_blocks_are_kept_out_of_the_code() -> None:
    text = ("<think>\nMaybe ```py\nimport os\nos.remove('x')\n``` first?\n</think>\n\n"
            "Thought: multiply.\nCode:\n```py\nfinal_answer(6 * 7)\n```")
    action = parse_action(text)
    assert action.code == "final_answer(6 * 7)" and action.thought == "multiply."
    cut = parse_action("<think>\nstill thinking ```py\nprint(1)\n```")  # stopped mid-thought
    assert cut.code is None and cut.error is not None
