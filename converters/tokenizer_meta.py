"""GGUF tokenizer metadata from `tokenizer.json` and `tokenizer_config.json`.

Covers byte-level BPE tokenizers (GPT-2 style: Qwen2/2.5/3, SmolLM, Llama-3):
the vocabulary in id order (holes and a config `vocab_size` larger than the
tokenizer are padded with unused `[PADn]` tokens), merges, token types
(added special tokens are CONTROL, other added tokens USER_DEFINED), the
llama.cpp pre-tokenizer name recognised from the `pre_tokenizer` section,
BOS/EOS/UNK/PAD ids, add-BOS/EOS flags and the chat template (from
`tokenizer_config.json`, or `chat_template.jinja` as transformers 5 saves it).

transformers may not split text the way `tokenizer.json` says: version 5
rebuilds the pre-tokenizer from the model type (a qwen2 model always gets
Qwen2's regex). The model was trained on what transformers produced, so when
transformers is installed we read the pre-tokenizer from the tokenizer it
loads, and note the difference (`TokenizerMeta.notes`).

WordPiece vocabularies (BERT encoders) are written as llama.cpp's `bert`
tokenizer: the vocabulary in "phantom space" form (a word start gets U+2581,
a `##` continuation loses its marks, `[BRACKETED]` specials stay), [CLS] as
BOS, [SEP] as SEP (both added around every text), [UNK] and [PAD].

Not covered: sentencepiece / unigram vocabularies, pre-tokenizers we do not
recognise (pass `pre=` to override), tokenizer normalizers (WordPiece models
are assumed lower-casing, as llama.cpp's WPM tokenizer is).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from converters.hf_dir import read_json
from edgeagent.errors import UserError

# The Split regexes of known tokenizer.json files, mapped to llama.cpp's names.
_LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPLIT_PRES: dict[str, str] = {_LLAMA3_REGEX: "llama-bpe", _QWEN2_REGEX: "qwen2"}
KNOWN_PRE_TOKENIZERS: tuple[str, ...] = ("gpt-2", "smollm", "qwen2", "llama-bpe")


@dataclass
class TokenizerMeta:
    """Everything `write` puts under `tokenizer.*`."""

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    pre: str
    special_ids: dict[str, int] = field(default_factory=dict)  # bos, eos, unk, pad
    add_bos: bool = False
    add_eos: bool = False
    chat_template: str | None = None
    notes: list[str] = field(default_factory=list)
    model: str = "gpt2"  # llama.cpp tokenizer model: "gpt2" (byte-level BPE) or "bert"

    def write(self, w: gguf.GGUFWriter) -> None:
        w.add_tokenizer_model(self.model)
        w.add_tokenizer_pre(self.pre)
        w.add_token_list(self.tokens)
        w.add_token_types(self.token_types)
        if self.model == "gpt2":
            w.add_token_merges(self.merges)
        adders = {
            "bos": w.add_bos_token_id,
            "eos": w.add_eos_token_id,
            "unk": w.add_unk_token_id,
            "pad": w.add_pad_token_id,
            "sep": w.add_sep_token_id,
            "mask": w.add_mask_token_id,
        }
        for kind, token_id in self.special_ids.items():
            adders[kind](token_id)
        w.add_add_bos_token(self.add_bos)
        w.add_add_eos_token(self.add_eos)
        if self.model == "bert":
            w.add_add_sep_token(True)
        if self.chat_template:
            w.add_chat_template(self.chat_template)


def _token_content(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def detect_pre_tokenizer(pre: Any) -> str:
    """llama.cpp's pre-tokenizer name for a tokenizer.json `pre_tokenizer` node."""
    if not isinstance(pre, dict):
        raise UserError("tokenizer.json has no pre_tokenizer; cannot tell how to split text")
    nodes: list[dict[str, Any]] = (
        list(pre.get("pretokenizers") or []) if pre.get("type") == "Sequence" else [pre]
    )
    kinds = [n.get("type") for n in nodes]
    if kinds == ["ByteLevel"] and nodes[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and nodes[0].get("individual_digits") and nodes[1].get(
        "use_regex", True
    ):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not nodes[1].get("use_regex", True):
        pattern = (nodes[0].get("pattern") or {}).get("Regex")
        if pattern in _SPLIT_PRES:
            return _SPLIT_PRES[pattern]
    raise UserError(
        f"unrecognised pre-tokenizer in tokenizer.json ({' + '.join(map(str, kinds))}); "
        f"known: {', '.join(KNOWN_PRE_TOKENIZERS)} (override with --tokenizer-pre)"
    )


def _post_processor_adds(post: Any) -> tuple[bool, bool]:
    """(adds BOS, adds EOS) according to a TemplateProcessing post-processor."""
    if not isinstance(post, dict):
        return False, False
    nodes = post.get("processors") if post.get("type") == "Sequence" else [post]
    for node in nodes or []:
        if node.get("type") == "TemplateProcessing":
            single = node.get("single") or []
            first = "SpecialToken" in single[0] if single else False
            last = "SpecialToken" in single[-1] if single else False
            return first, last
    return False, False


def _read_chat_template(model_dir: Path, tok_config: dict[str, Any]) -> str | None:
    tpl = tok_config.get("chat_template")
    if isinstance(tpl, list):  # [{"name": ..., "template": ...}]
        named = {str(t.get("name")): str(t.get("template")) for t in tpl if isinstance(t, dict)}
        tpl = named.get("default") or next(iter(named.values()), None)
    if isinstance(tpl, str) and tpl:
        return tpl
    jinja = model_dir / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text(encoding="utf-8")
    legacy = model_dir / "chat_template.json"
    if legacy.exists():
        value = read_json(legacy).get("chat_template")
        return str(value) if value else None
    return None


def _transformers_pre_tokenizer(model_dir: Path) -> Any:
    """The pre-tokenizer transformers actually uses for this directory, or None."""
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        return None
    try:
        import logging

        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        logging.getLogger("transformers").setLevel(logging.ERROR)
        tok = AutoTokenizer.from_pretrained(model_dir)
        return json.loads(tok.backend_tokenizer.to_str()).get("pre_tokenizer")
    except Exception:  # any failure: fall back to tokenizer.json as written
        return None


def build_tokenizer_meta(
    model_dir: Path, config: dict[str, Any], *, pre: str | None = None
) -> TokenizerMeta:
    """Tokenizer metadata from the files next to the model."""
    tok_file = model_dir / "tokenizer.json"
    if not tok_file.exists():
        hint = (
            " (it has a sentencepiece tokenizer.model, which we do not convert)"
            if (model_dir / "tokenizer.model").exists()
            else ""
        )
        raise UserError(
            f"{model_dir} has no tokenizer.json{hint}; save the tokenizer next to the model "
            "(tokenizer.save_pretrained(dir))"
        )
    try:
        tok = json.loads(tok_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {tok_file}: {exc}") from None
    tok_config_path = model_dir / "tokenizer_config.json"
    tok_config = read_json(tok_config_path) if tok_config_path.exists() else {}

    model = tok.get("model") or {}
    if model.get("type") == "WordPiece" and isinstance(model.get("vocab"), dict):
        return _wordpiece_meta(tok, tok_config, config)
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise UserError(
            f"{tok_file} is a {model.get('type', 'unknown')} tokenizer; only byte-level BPE "
            "and WordPiece are supported"
        )
    vocab: dict[str, int] = {str(k): int(v) for k, v in model["vocab"].items()}
    added: dict[int, tuple[str, bool]] = {}
    for entry in tok.get("added_tokens") or []:
        added[int(entry["id"])] = (str(entry["content"]), bool(entry.get("special", False)))

    size = max([*vocab.values(), *added.keys(), -1]) + 1
    size = max(size, int(config.get("vocab_size") or 0))
    by_id: dict[int, str] = {v: k for k, v in vocab.items()}
    tokens: list[str] = []
    types: list[int] = []
    for i in range(size):
        if i in added:
            text, special = added[i]
            looks_special = text.startswith(("<|", "<｜")) and text.endswith(("|>", "｜>"))
            tokens.append(text)
            types.append(
                int(gguf.TokenType.CONTROL if special or looks_special
                    else gguf.TokenType.USER_DEFINED)
            )
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(int(gguf.TokenType.NORMAL))
        else:
            tokens.append(f"[PAD{i}]")
            types.append(int(gguf.TokenType.UNUSED))

    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]

    ids = {text: i for i, text in enumerate(tokens)}
    special_ids: dict[str, int] = {}
    for kind in ("bos", "eos", "unk", "pad"):
        content = _token_content(tok_config.get(f"{kind}_token"))
        if content is not None and content in ids:
            special_ids[kind] = ids[content]
            continue
        cfg_id = config.get(f"{kind}_token_id")
        if isinstance(cfg_id, list):
            cfg_id = cfg_id[0] if cfg_id else None
        if isinstance(cfg_id, int) and 0 <= cfg_id < size:
            special_ids[kind] = cfg_id

    notes: list[str] = []
    if pre is None:
        pre = detect_pre_tokenizer(tok.get("pre_tokenizer"))
        effective = _transformers_pre_tokenizer(model_dir)
        if effective is not None:
            try:
                used = detect_pre_tokenizer(effective)
            except UserError:
                used = pre
            if used != pre:
                notes.append(
                    f"transformers splits text as {used!r} for this model, not as "
                    f"tokenizer.json's {pre!r}; following transformers"
                )
                pre = used

    post_bos, post_eos = _post_processor_adds(tok.get("post_processor"))
    add_bos = tok_config.get("add_bos_token")
    add_eos = tok_config.get("add_eos_token")
    return TokenizerMeta(
        tokens=tokens,
        token_types=types,
        merges=merges,
        pre=pre,
        special_ids=special_ids,
        add_bos=bool(add_bos) if isinstance(add_bos, bool) else post_bos,
        add_eos=bool(add_eos) if isinstance(add_eos, bool) else post_eos,
        chat_template=_read_chat_template(model_dir, tok_config),
        notes=notes,
    )


def _phantom(token: str) -> str:
    """llama.cpp's WPM spelling of a WordPiece token."""
    if token.startswith("[") and token.endswith("]"):
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token


def _wordpiece_meta(
    tok: dict[str, Any], tok_config: dict[str, Any], config: dict[str, Any]
) -> TokenizerMeta:
    """A BERT WordPiece tokenizer as llama.cpp's `bert` (WPM) tokenizer."""
    vocab: dict[str, int] = {str(k): int(v) for k, v in tok["model"]["vocab"].items()}
    special = {str(e["content"]) for e in tok.get("added_tokens") or [] if e.get("special")}
    size = max(max(vocab.values()) + 1, int(config.get("vocab_size") or 0))
    by_id = {v: k for k, v in vocab.items()}
    tokens: list[str] = []
    types: list[int] = []
    for i in range(size):
        text = by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(int(gguf.TokenType.UNUSED))
            continue
        tokens.append(_phantom(text))
        types.append(int(gguf.TokenType.CONTROL if text in special else gguf.TokenType.NORMAL))
    ids = {text: i for i, text in enumerate(tokens)}
    special_ids: dict[str, int] = {}
    for kind, key, fallback in (("bos", "cls_token", "[CLS]"), ("sep", "sep_token", "[SEP]"),
                                ("unk", "unk_token", "[UNK]"), ("pad", "pad_token", "[PAD]"),
                                ("mask", "mask_token", "[MASK]")):
        content = _token_content(tok_config.get(key)) or fallback
        if content in ids:
            special_ids[kind] = ids[content]
    if "bos" not in special_ids or "sep" not in special_ids:
        raise UserError("WordPiece tokenizer without [CLS]/[SEP] tokens; not a BERT tokenizer?")
    notes = []
    if tok_config.get("do_lower_case") is False:
        notes.append("the tokenizer keeps case; llama.cpp's WPM tokenizer lower-cases")
    return TokenizerMeta(tokens=tokens, token_types=types, merges=[], pre="default",
                         special_ids=special_ids, add_bos=True, add_eos=False,
                         notes=notes, model="bert")
