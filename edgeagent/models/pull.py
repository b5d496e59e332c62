"""`edgeagent models pull`: from a Hub repo (or a catalog name) to a registered model.

The repo's file list decides what it is:

- a PEFT adapter (`adapter_config.json`): the base (`--base`, the catalog's
  base, or `base_model_name_or_path`) is pulled as below or reused when already
  registered; the adapter (`adapter_model.safetensors`, or `adapter_model.bin`
  read without torch) becomes a llama.cpp LoRA GGUF (`convert lora`), and the
  pair is registered as one model that loads base + adapter. `--merge`
  instead merges the adapter into the base's Hugging Face weights while
  converting, and quantizes one GGUF.
- a transformers repo (`config.json` + `*.safetensors`): download,
  `convert gguf` (F16, in the cache dir), `convert quantize` to `--quant`
  (default Q4_K_M) into the models dir, `convert verify` on a short prompt
  (when the `train` extra is installed; tokenization must match), register.
- a GGUF repo: the `--quant` file (default Q4_K_M, then Q4_0, Q8_0, else the
  smallest), all shards of a split (`-0000k-of-0000n.gguf`) one; registered
  where it lies in the Hugging Face cache (not copied).

All stages report to one `Report` callback (stage, fraction or None, detail),
which the CLI draws as one progress line and the TUI as its progress bar.
Output files appear atomically; intermediates live in the cache dir and are
removed. Not covered: other weight formats (PyTorch-only model repos, ONNX),
multimodal projectors, architectures the converters do not know.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from edgeagent.errors import UserError
from edgeagent.models import hub
from edgeagent.models.hub import RepoFile
from edgeagent.models.registry import ModelEntry, Registry

Report = Callable[[str, float | None, str], None]
PREFERRED = ("Q4_K_M", "Q4_0", "Q8_0")
_QUANT_RE = re.compile(r"(?i)(?:^|[-_.])((?:I?Q\d(?:_[0-9A-Z]+)*)|BF16|F16|F32)(?=[-_.]|$)")
_SHARD_RE = re.compile(r"^(?P<stem>.+)-(?P<k>\d{5})-of-(?P<n>\d{5})\.gguf$")
_HF_SIDE_FILES = {"config.json", "generation_config.json", "tokenizer.json",
                  "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                  "merges.txt", "added_tokens.json", "chat_template.jinja",
                  "model.safetensors.index.json"}


def _quiet(stage: str, fraction: float | None, detail: str) -> None:
    return None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.") or "model"


def pull(spec: str, *, quant: str | None = None, name: str | None = None,
         base: str | None = None, merge: bool = False, report: Report | None = None
         ) -> ModelEntry:
    """Pull `spec` (REPO[:FILE] or a catalog name), register it, and return its entry."""
    from edgeagent.models.catalog import find

    report = report or _quiet
    entry = find(spec)
    if entry is not None:
        spec, quant, name = entry.repo, quant or entry.quant, name or entry.name
        base = base or entry.base
    repo, file = hub.parse_spec(spec)
    if file is not None and not file.lower().endswith(".gguf"):
        raise UserError(f"{file} is not a .gguf file; name a GGUF, or pull the whole repo")
    report("listing", None, repo)
    revision, files = hub.list_files(repo)
    names = {f.path for f in files}
    if file is not None:
        if file not in names:
            raise UserError(f"{repo} has no file {file}", exit_code=3)
        return _pull_gguf(repo, revision, files, quant, name, report, only=file)
    if "adapter_config.json" in names:
        return _pull_adapter(repo, revision, files, quant, name, base, merge, report)
    if "config.json" in names and any(n.endswith(".safetensors") for n in names):
        return _pull_transformers(repo, revision, files, quant, name, report)
    if any(n.lower().endswith(".gguf") for n in names):
        return _pull_gguf(repo, revision, files, quant, name, report)
    if "config.json" in names and any(n.endswith((".bin", ".pt", ".pth")) for n in names):
        raise UserError(f"{repo} ships PyTorch .bin weights only; this needs safetensors "
                        "(or a GGUF repo of the same model)")
    raise UserError(f"{repo} has no GGUF, safetensors model or PEFT adapter to pull")


# -- GGUF repos ---------------------------------------------------------------
def gguf_groups(files: list[RepoFile]) -> dict[str, list[RepoFile]]:
    """GGUF files by quantization label (shards of one split together, in order)."""
    groups: dict[str, list[RepoFile]] = {}
    for f in sorted(files, key=lambda f: f.path):
        base = Path(f.path).name
        if not base.lower().endswith(".gguf") or "mmproj" in base.lower():
            continue
        m = _SHARD_RE.match(base)
        stem = m.group("stem") if m else base[: -len(".gguf")]
        q = _QUANT_RE.findall(stem)
        label = q[-1].upper() if q else stem
        key = label if label not in groups or _stem_of(groups[label][0]) == stem else stem
        groups.setdefault(key, []).append(f)
    return groups


def _stem_of(f: RepoFile) -> str:
    base = Path(f.path).name
    m = _SHARD_RE.match(base)
    return m.group("stem") if m else base[: -len(".gguf")]


def choose_gguf(groups: dict[str, list[RepoFile]], quant: str | None) -> tuple[str, list[RepoFile]]:
    if not groups:
        raise UserError("the repo has no .gguf model files")
    if quant:
        want = quant.upper()
        if want in groups:
            return want, groups[want]
        raise UserError(f"no {want} file in the repo; it has {', '.join(sorted(groups))}")
    for q in PREFERRED:
        if q in groups:
            return q, groups[q]
    label = min(groups, key=lambda k: sum(f.size for f in groups[k]))
    return label, groups[label]


def _pull_gguf(repo: str, revision: str, files: list[RepoFile], quant: str | None,
               name: str | None, report: Report, only: str | None = None) -> ModelEntry:
    if only is not None:
        chosen = [f for f in files if f.path == only]
        m = _SHARD_RE.match(Path(only).name)
        if m:
            stem = m.group("stem")
            chosen = [f for f in files if _SHARD_RE.match(Path(f.path).name)
                      and _stem_of(f) == stem]
        q = _QUANT_RE.findall(_stem_of(chosen[0]))
        label = q[-1].upper() if q else "gguf"
    else:
        label, chosen = choose_gguf(gguf_groups(files), quant)
    m = _SHARD_RE.match(Path(chosen[0].path).name)
    if m and len(chosen) != int(m.group("n")):
        raise UserError(f"{repo}: {chosen[0].path} is split in {int(m.group('n'))} parts but "
                        f"the repo lists {len(chosen)}", exit_code=3)
    snapshot = _download(repo, revision, chosen, report)
    first = snapshot / chosen[0].path
    report("register", None, first.name)
    reg = Registry.load()
    stem = repo.split("/")[1]
    stem = re.sub(r"(?i)[-_]gguf$", "", stem)
    entry = reg.add(first, name=name or f"{_slug(stem)}-{label.lower()}",
                    source=f"hf:{repo}:{chosen[0].path}", sha256=chosen[0].sha256)
    _save(reg, entry)
    return entry


def _download(repo: str, revision: str, files: list[RepoFile], report: Report) -> Path:
    total = sum(f.size for f in files)

    def progress(done: int, _total: int | None, name: str) -> None:
        report("download", done / total if total else None,
               f"{name} {done / 1e6:,.1f}/{total / 1e6:,.1f} MB")

    return hub.fetch_many(repo, files, revision=revision, progress=progress)


def _save(reg: Registry, entry: ModelEntry) -> None:
    if reg.default is None:
        reg.default = entry.name
    reg.save()


# -- transformers repos -------------------------------------------------------
def _pull_transformers(repo: str, revision: str, files: list[RepoFile], quant: str | None,
                       name: str | None, report: Report, *, adapter: Path | None = None
                       ) -> ModelEntry:
    from edgeagent.models.convert_steps import build_gguf

    wanted = [f for f in files if f.path in _HF_SIDE_FILES
              or (f.path.endswith(".safetensors") and "/" not in f.path)]
    snapshot = _download(repo, revision, wanted, report)
    quant = (quant or "Q4_K_M").upper()
    slug = name or f"{_slug(repo.split('/')[1])}-{quant.lower()}"
    out = build_gguf(snapshot, quant, slug.removesuffix(f"-{quant.lower()}"), report,
                     adapter=adapter)
    report("register", None, out.name)
    reg = Registry.load()
    entry = reg.add(out, name=slug, source=f"hf:{repo}")
    _save(reg, entry)
    return entry


# -- PEFT adapter repos -------------------------------------------------------
def _pull_adapter(repo: str, revision: str, files: list[RepoFile], quant: str | None,
                  name: str | None, base: str | None, merge: bool, report: Report
                  ) -> ModelEntry:
    from edgeagent.models.convert_steps import build_lora

    names = {f.path for f in files}
    weights = next((w for w in ("adapter_model.safetensors", "adapter_model.bin")
                    if w in names), None)
    if weights is None:
        raise UserError(f"{repo} has adapter_config.json but no adapter_model.safetensors or "
                        "adapter_model.bin", exit_code=3)
    wanted = [f for f in files if f.path in ("adapter_config.json", weights)]
    adapter_dir = _download(repo, revision, wanted, report)
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    base_spec = base or config.get("base_model_name_or_path")
    if not base_spec:
        raise UserError(f"{repo}: adapter_config.json names no base_model_name_or_path; "
                        "pass --base REPO")
    slug = name or _slug(repo.split("/")[1])
    if merge:
        base_repo, _ = hub.parse_spec(str(base_spec))
        report("listing", None, base_repo)
        base_rev, base_files = hub.list_files(base_repo)
        if "config.json" not in {f.path for f in base_files}:
            raise UserError(f"--merge needs the base's safetensors weights; {base_repo} is not "
                            "a transformers repo (pass --base with one)")
        return _pull_transformers(base_repo, base_rev, base_files, quant, slug, report,
                                  adapter=adapter_dir)
    base_entry = _base_entry(str(base_spec), quant, report)
    lora = build_lora(adapter_dir, Path(base_entry.path), slug, report)
    report("register", None, lora.name)
    reg = Registry.load()
    entry = reg.add_adapter(reg.get(base_entry.name), lora, name=slug, source=f"hf:{repo}")
    _save(reg, entry)
    return entry


def _base_entry(spec: str, quant: str | None, report: Report) -> ModelEntry:
    """The registered base for `spec` (a registry name, catalog name or repo), pulled if new."""
    reg = Registry.load()
    if spec in reg.entries and not reg.entries[spec].lora:
        return reg.entries[spec]
    for e in reg.entries.values():
        same_repo = e.source == f"hf:{spec}" or e.source.startswith(f"hf:{spec}:")
        if same_repo and not e.lora and (quant is None or e.quant == quant.upper()):
            return e
    return pull(spec, quant=quant, report=report)
