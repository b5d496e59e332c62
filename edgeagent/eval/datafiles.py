"""The paper's data files (benchmarks, training questions, the multihop wiki): where they live.

Each file has a path in one layout (`benchmarks/test/gsm8k_1319.jsonl`,
`wiki/multihop_paragraphs.jsonl.gz`, …: the layout of the paper's reference
code, byte for byte the same files) and a pinned sha256 and size (`FILES`).
`locate(rel, data_dir)` finds one, in this order:

1. `data_dir` (`--data-dir DIR`), else `$EDGEAGENT_DATA`: the file must be
   there; nothing is downloaded (this is the offline route, and what tests use
   with the project's test data folder).
2. The user's data dir, `<data dir>/datasets/<rel>` (files put there by hand).
3. A download from the Hugging Face Hub (`huggingface_hub.hf_hub_download`,
   the shared Hugging Face cache, so it happens once): dataset repo
   `DATA_REPO` at the pinned `DATA_REVISION` (`$EDGEAGENT_DATA_REPO` /
   `$EDGEAGENT_DATA_REVISION` override both, e.g. for a mirror). The file's
   sha256 is checked against `FILES` before it is used, wherever it came from
   in this step; a cached copy is used offline.

Bad or missing data is a one-line `UserError` (exit code 3 for the Hub).

Not covered: publishing the repo (`hf upload DATA_REPO <shared data> .
--repo-type dataset`, then pin the printed commit in `DATA_REVISION`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgeagent import locations
from edgeagent.errors import UserError

DATA_REPO = "edgeagent/paper-data"
# A commit of DATA_REPO once published; until then the branch, with every file's
# content pinned by its sha256 below either way.
DATA_REVISION = "main"


@dataclass(frozen=True)
class DataFile:
    sha256: str
    size: int


# The paper's files (github Nardien/agent-distillation @0f6cae3 `data_processor/`, renamed
# without their dates; GSM8K from openai/grade-school-math @3101c7d5), and the multihop wiki.
FILES: dict[str, DataFile] = {
    "benchmarks/test/2wikimultihopqa_500.json": DataFile(
        "5034d0e66b38f5e54f20934cbb02ff1d38f0b292efe81da05b5ebdeafcb1bb07", 163165),
    "benchmarks/test/aime_90.json": DataFile(
        "445868439c6c88c8f3ac99c9aabae90606cac43ade63597936bec37a22d510c0", 559888),
    "benchmarks/test/gsm8k_1319.jsonl": DataFile(
        "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14", 749738),
    "benchmarks/test/gsm_hard_500.json": DataFile(
        "970c69744216a75fe04eb86ff1adaf208df5191e2731c6ef0610bd2312266498", 209659),
    "benchmarks/test/hotpotqa_500.json": DataFile(
        "770b2740d2d5195f983dbeae3c770900edab776b5986b4cbff3194443a771b00", 185087),
    "benchmarks/test/math_500.json": DataFile(
        "32ae376ee63aee4a1e59ea167afebffa0031250b154d1805d13522c60c6069cb", 215468),
    "benchmarks/test/musique_500.json": DataFile(
        "683634bcc958a79b144cffb815d4f56002dc22ed7358e11b897f9ff03ba69110", 198364),
    "benchmarks/test/olymath_200.json": DataFile(
        "dc105d5747a37031d1f981865dd5603d533488a435b8a2a0722fd167081912d1", 97032),
    "benchmarks/train/gsm8k_train_7473.jsonl": DataFile(
        "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465", 4166206),
    "benchmarks/train/hotpotqa_1000.json": DataFile(
        "35ae8108e8cb856813dc4aeb7de261b794ec2424ddb19c81449d1007a71f1fb8", 365975),
    "benchmarks/train/math_hard_1000.json": DataFile(
        "71240de787bb08c59b09bbb5fa4daa2cb536849da29dfdd25bf9e27c7eff344b", 497339),
    "benchmarks/train/math_medium_1000.json": DataFile(
        "af3aaef02faf2264aa32e30ca9b531b26ca7662f6be87a718ef3f5eb139e31ba", 409925),
    "wiki/multihop_paragraphs.jsonl.gz": DataFile(
        "72248c0cbd898ceebad7c18960ebbacec58167ff96acd3b10f9e558305c6f0ba", 4688069),
    "retrieval/hotpotqa_gold_titles.jsonl": DataFile(
        "3d64306b325ba193e65d3941e5e680f420805761a8b98d94125c5c1ac708e798", 373307),
}


def data_repo() -> tuple[str, str]:
    """(repo, revision) the files are downloaded from."""
    return (os.environ.get("EDGEAGENT_DATA_REPO") or DATA_REPO,
            os.environ.get("EDGEAGENT_DATA_REVISION") or DATA_REVISION)


def explicit_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """`--data-dir`, else `$EDGEAGENT_DATA`, checked; None when neither is set."""
    if data_dir:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise UserError(f"data folder not found: {path}")
        return path
    env = os.environ.get("EDGEAGENT_DATA")
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise UserError(f"EDGEAGENT_DATA points to a missing folder: {path}")
        return path
    return None


def user_dir() -> Path:
    """Where a user may put the files by hand: `<data dir>/datasets`."""
    return locations.data_dir() / "datasets"


def _sha256(path: Path) -> str:
    from edgeagent.wheelfetch import sha256_file

    return sha256_file(path)


def locate(rel: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The local path of data file `rel` (see the module docstring for the order)."""
    base = explicit_dir(data_dir)
    if base is not None:
        path = base / rel
        if not path.is_file():
            kind = "benchmark" if rel.startswith("benchmarks/") else "data"
            raise UserError(f"{kind} file missing: {path} (a data dir holds the paper's files "
                            "as benchmarks/…, wiki/…)")
        return path
    path = user_dir() / rel
    if path.is_file():
        return path
    return download(rel)


def download(rel: str) -> Path:
    """`rel` from the Hugging Face cache or the Hub, checked against its sha256.

    The cache is tried first, without the network: the sha256 pins the content,
    so a cached copy is as good as a fresh one. Before going online the endpoint
    is probed once, so no network is one line at once, not minutes of retries.
    """
    from edgeagent.wiki.remote import endpoint, hub_error, probe

    pinned = FILES.get(rel)
    if pinned is None:
        raise UserError(f"no data file {rel!r} is known; known: {', '.join(sorted(FILES))}")
    repo, revision = data_repo()
    what = f"{repo}@{revision}:{rel}"
    hint = "pass --data-dir DIR with the paper's files to work offline"
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise UserError(f"huggingface_hub is not installed; {hint}") from None
    found: Path | None = None
    try:
        found = Path(hf_hub_download(repo, rel, repo_type="dataset", revision=revision,
                                     endpoint=endpoint(), local_files_only=True))
        if _sha256(found) != pinned.sha256:
            found = None  # an old or damaged copy: fetch it again
    except Exception:
        found = None
    if found is None:
        probe(what, hint)
        try:
            found = Path(hf_hub_download(repo, rel, repo_type="dataset", revision=revision,
                                         endpoint=endpoint(), force_download=False))
        except Exception as exc:
            raise hub_error(exc, what, hint) from None
        digest = _sha256(found)
        if digest != pinned.sha256:
            raise UserError(f"{repo}:{rel} has sha256 {digest}, not the pinned {pinned.sha256}; "
                            "refusing to use it (pass --data-dir DIR with the paper's files)",
                            exit_code=3)
    return found
