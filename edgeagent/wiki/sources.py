"""Readers that turn a source file into `SourcePassage`s, and format detection.

Formats:

- `jsonl`: JSON Lines, plain, `.gz` or `.bz2`; each line `{title, text}` (an
  article or paragraph, split into ~100-word passages; optional `id`) or
  `{id, contents}` with `contents` = `"Title"\\ntext` (Search-R1 wiki-18,
  already passages, kept as they are). With `split=False`, `{title, text}`
  records are taken as passages too (paragraph corpora such as HotpotQA's).
- `dpr-tsv`: DPR `psgs_w100.tsv` (`id\\ttext\\ttitle`, optional header), already passages.
- `mediawiki`: a MediaWiki XML dump (`.xml` or `.xml.bz2`), see `mediawiki`.

Compression is recognised by magic bytes, not by name. Lines are split on
"\\n" only (the data has U+2028 inside text). Every kind of bad input (missing
file, unknown format, truncated archive, non-UTF-8 bytes, invalid or
truncated JSON line, wrong TSV columns) raises a one-line `UserError`.

Not covered: Parquet/Arrow datasets, remote URLs.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar
from xml.etree.ElementTree import ParseError

from edgeagent.errors import UserError
from edgeagent.wiki.passages import SourcePassage, article_passages

T = TypeVar("T")

FORMATS: tuple[str, ...] = ("jsonl", "dpr-tsv", "mediawiki")

_GZIP_MAGIC = b"\x1f\x8b"
_BZ2_MAGIC = b"BZh"


def _strip_compression_suffix(name: str) -> str:
    for suffix in (".gz", ".bz2"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _format_from_name(path: Path) -> str | None:
    name = _strip_compression_suffix(path.name.lower())
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith(".tsv"):
        return "dpr-tsv"
    if name.endswith(".xml"):
        return "mediawiki"
    return None


class Source:
    """A source file opened for reading passages; tracks compressed bytes read."""

    def __init__(self, path: Path, fmt: str = "auto", *, split: bool = True) -> None:
        self.path = Path(path)
        self.split = split
        if not self.path.exists():
            raise UserError(f"no such file: {self.path}")
        if self.path.is_dir():
            raise UserError(f"{self.path} is a directory, expected a file")
        if fmt not in ("auto", *FORMATS):
            raise UserError(f"unknown format {fmt!r}; use one of: auto, {', '.join(FORMATS)}")
        try:
            self.size: int | None = self.path.stat().st_size if self.path.is_file() else None
        except OSError:
            self.size = None
        self._raw: BinaryIO | None = None
        self.format = fmt if fmt != "auto" else self._detect()

    # -- opening -----------------------------------------------------------------

    def _open_raw(self) -> BinaryIO:
        try:
            return open(self.path, "rb")
        except OSError as exc:
            raise UserError(f"cannot read {self.path}: {exc.strerror or exc}") from None

    def _open_stream(self) -> BinaryIO:
        """The decompressed byte stream (magic bytes decide the codec)."""
        raw = io.BufferedReader(self._open_raw(), buffer_size=1 << 20)  # type: ignore[type-var]
        self._raw = raw
        head = raw.peek(3)[:3]
        if head.startswith(_GZIP_MAGIC):
            return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
        if head.startswith(_BZ2_MAGIC):
            return bz2.BZ2File(raw, mode="rb")  # type: ignore[return-value]
        return raw

    def _detect(self) -> str:
        by_name = _format_from_name(self.path)
        if by_name is not None:
            return by_name
        stream = self._open_stream()
        try:
            head = self._guard(lambda: stream.read(4096))
        finally:
            stream.close()
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if text.startswith(b"{"):
            return "jsonl"
        if text.startswith(b"<"):
            return "mediawiki"
        if b"\t" in text.split(b"\n", 1)[0]:
            return "dpr-tsv"
        if not text:
            raise UserError(f"{self.path} is empty: nothing to index")
        raise UserError(
            f"cannot tell the format of {self.path.name}; pass --format jsonl|dpr-tsv|mediawiki"
        )

    def position(self) -> int:
        """Bytes of the (compressed) file consumed so far."""
        raw = self._raw
        if raw is None:
            return 0
        try:
            return raw.tell()
        except (OSError, ValueError):
            return 0

    # -- reading -----------------------------------------------------------------

    def _guard(self, fn: Callable[[], bytes]) -> bytes:
        try:
            return fn()
        except Exception as exc:
            raise self._user_error(exc) from None

    def _user_error(self, exc: BaseException, where: str = "") -> UserError:
        name = self.path.name
        at = f" ({where})" if where else ""
        if isinstance(exc, UserError):
            return exc
        if isinstance(exc, EOFError):
            return UserError(f"{name} is truncated{at}: the compressed stream ends early")
        if isinstance(exc, UnicodeDecodeError):
            return UserError(f"{name} is not UTF-8{at}: {exc.reason} at byte {exc.start}")
        if isinstance(exc, (gzip.BadGzipFile, zlib.error)):
            return UserError(f"{name} is not a valid gzip file{at}: {exc}")
        if isinstance(exc, ParseError):
            return UserError(f"{name} is not well-formed XML{at}: {exc}")
        if isinstance(exc, OSError):
            return UserError(f"cannot read {name}{at}: {exc}")
        if isinstance(exc, csv.Error):
            return UserError(f"{name} is not valid TSV{at}: {exc}")
        return UserError(f"cannot read {name}{at}: {exc}")

    def passages(self) -> Iterator[SourcePassage]:
        """Every passage in the file, in order; raises `UserError` on bad input."""
        stream = self._open_stream()
        try:
            if self.format == "jsonl":
                yield from self._jsonl(stream)
            elif self.format == "dpr-tsv":
                yield from self._dpr_tsv(stream)
            else:
                yield from self._mediawiki(stream)
        finally:
            stream.close()
            if self._raw is not None:
                self._raw.close()

    def _numbered(self, items: Iterator[T], unit: str = "") -> Iterator[tuple[int, T]]:
        """`(n, item)` from 1; a read error becomes a `UserError` saying where."""
        n = 0
        while True:
            try:
                item = next(items)
            except StopIteration:
                return
            except Exception as exc:
                raise self._user_error(exc, f"after {unit} {n}" if unit else "") from None
            n += 1
            yield n, item

    def _jsonl(self, stream: BinaryIO) -> Iterator[SourcePassage]:
        for lineno, raw in self._numbered(iter(stream), "line"):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise self._user_error(exc, f"line {lineno}") from None
            if lineno == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                cut = "" if raw.endswith(b"\n") else " (truncated last line?)"
                raise UserError(
                    f"{self.path.name} line {lineno}: invalid JSON{cut}: {exc.msg}"
                ) from None
            yield from self._record(record, lineno)

    def _record(self, record: object, lineno: int) -> Iterator[SourcePassage]:
        if not isinstance(record, dict):
            raise UserError(f"{self.path.name} line {lineno}: expected a JSON object")
        title = record.get("title")
        text = record.get("text")
        if isinstance(text, str):
            title_str = title if isinstance(title, str) else ""
            rid = record.get("id")
            article_id = str(rid) if rid is not None else str(lineno)
            if self.split:
                yield from article_passages(title_str.strip(), text, article_id)
            else:
                body = " ".join(text.split())
                if body:
                    yield SourcePassage(title=title_str.strip(), text=body, doc_id=article_id)
            return
        contents = record.get("contents")
        if isinstance(contents, str):
            head, _, body = contents.partition("\n")
            head = head.strip()
            if len(head) >= 2 and head[0] == head[-1] == '"':
                head = head[1:-1]
            rid = record.get("id")
            doc_id = str(rid) if rid is not None else str(lineno)
            body = " ".join(body.split())
            if body:
                yield SourcePassage(title=head, text=body, doc_id=doc_id)
            return
        raise UserError(
            f"{self.path.name} line {lineno}: expected {{title, text}} or {{id, contents}} "
            "string fields"
        )

    def _dpr_tsv(self, stream: BinaryIO) -> Iterator[SourcePassage]:
        text_stream = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        reader = csv.reader(text_stream, delimiter="\t")
        for row_no, row in self._numbered(reader, "row"):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if row_no == 1 and [c.strip().lower().lstrip("\ufeff") for c in row] == [
                "id", "text", "title"
            ]:
                continue
            if len(row) != 3:
                raise UserError(
                    f"{self.path.name} row {row_no}: expected 3 tab-separated columns "
                    f"(id, text, title), got {len(row)}"
                )
            doc_id, text, title = row
            text = " ".join(text.split())
            if text:
                yield SourcePassage(title=title.strip(), text=text, doc_id=doc_id.strip())

    def _mediawiki(self, stream: BinaryIO) -> Iterator[SourcePassage]:
        from edgeagent.wiki.mediawiki import iter_articles

        for _, (page_id, title, text) in self._numbered(iter_articles(stream)):
            yield from article_passages(title, text, page_id)


def iter_limited(passages: Iterator[SourcePassage], limit: int | None) -> Iterator[SourcePassage]:
    """At most `limit` passages (all when `limit` is None)."""
    if limit is None:
        yield from passages
        return
    for n, passage in enumerate(passages):
        if n >= limit:
            return
        yield passage

