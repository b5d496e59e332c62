"""Write corpora in the record format of the paper's wiki-18 (`PeterJinGo/wiki-18-corpus`).

Each line is `{"id": "<n>", "contents": "\\"Title\\"\\ntext"}`, ids counting from 0
in file order, as in Search-R1's `wiki-18.jsonl`. The text is real Wikipedia text
from `../shared/data/wiki` cut into ~100-word passages, repeated (with fresh ids)
until `count` passages are written. `kind` picks the container: `jsonl` (plain
text), `gz` (gzip of the JSON Lines) or `tar.gz` (gzip of a tar holding one
`wiki-18.jsonl` member, which the real file is reported to be).

Used by the wiki-pull tests and, from the command line, to make the 2M-passage
measurement corpus:

    python tests/wiki18_corpus.py ../shared/data /tmp/wiki18-2m.jsonl.gz 2000000

Not covered: the real corpus's vocabulary (repeated text has a smaller term
dictionary than 21M distinct passages; the note says so next to the figures).
"""

from __future__ import annotations

import gzip
import io
import json
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

SOURCES = ("wiki/wikitasks_articles.jsonl.gz", "wiki/multihop_paragraphs.jsonl.gz",
           "wiki/vital_summaries_en.jsonl.gz")


def _split(text: str, target: int = 100) -> Iterator[str]:
    words = text.split()
    for start in range(0, len(words), target):
        chunk = words[start:start + target]
        if len(chunk) >= 8:
            yield " ".join(chunk)


def source_passages(data: Path, max_passages: int | None = None) -> list[tuple[str, str]]:
    """(title, text) passages of the shared wiki files, in file order."""
    out: list[tuple[str, str]] = []
    for rel in SOURCES:
        with gzip.open(data / rel, "rb") as f:
            for raw in f:
                rec = json.loads(raw)
                title = str(rec.get("title") or "").strip()
                for chunk in _split(str(rec.get("text") or "")):
                    out.append((title, chunk))
                    if max_passages is not None and len(out) >= max_passages:
                        return out
    return out


def records(data: Path, count: int) -> Iterator[bytes]:
    """`count` JSON lines in the wiki-18 format (bytes, newline-terminated)."""
    base = source_passages(data, max_passages=min(count, 400_000))
    for n in range(count):
        title, text = base[n % len(base)]
        contents = f'"{title}"\n{text}'
        yield (json.dumps({"id": str(n), "contents": contents}, ensure_ascii=False)
               + "\n").encode("utf-8")


def write_corpus(data: Path, out: Path, count: int, kind: str = "gz") -> Path:
    """Write `count` passages to `out` as `jsonl`, `gz` or `tar.gz` (see module docstring)."""
    if kind == "jsonl":
        with open(out, "wb") as f:
            f.writelines(records(data, count))
    elif kind == "gz":
        with gzip.open(out, "wb", compresslevel=6) as f:
            f.writelines(records(data, count))
    elif kind == "tar.gz":
        body = io.BytesIO()
        body.writelines(records(data, count))
        info = tarfile.TarInfo("wiki-18.jsonl")
        info.size = body.tell()
        body.seek(0)
        with gzip.open(out, "wb", compresslevel=6) as gz, \
                tarfile.open(fileobj=gz, mode="w|") as tar:
            tar.addfile(info, body)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return out


if __name__ == "__main__":
    data_dir, out_path, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    kind = sys.argv[4] if len(sys.argv) > 4 else "gz"
    write_corpus(data_dir, out_path, n, kind)
    print(f"wrote {n:,} passages to {out_path} ({out_path.stat().st_size:,} bytes)")
