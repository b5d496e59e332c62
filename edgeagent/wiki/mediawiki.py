"""Streamed MediaWiki XML dumps (`pages-articles.xml[.bz2]`) as plain-text articles.

`iter_articles(stream)` walks the XML with `iterparse`, clearing each page once
read, so memory stays flat on a multi-GB dump. It keeps main-namespace
articles only: redirects, disambiguation pages and other namespaces (Talk,
User, File, Template, Category, ...) are skipped. `wikitext_to_text` turns
wikitext into plain text with mwparserfromhell: templates, references,
tables, galleries, files/images, categories and interlanguage links go;
link texts stay; trailing "References", "External links", "See also" ...
sections go.

Not covered: Lua-expanded templates (infobox values, convert units), math
markup, multistream index files.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import IO
from xml.etree.ElementTree import Element, iterparse

_DROP_TAGS = frozenset(
    {"ref", "references", "table", "gallery", "math", "chem", "timeline", "imagemap",
     "score", "syntaxhighlight", "source", "templatedata", "noinclude", "graph", "mapframe"}
)
_DROP_SECTIONS = frozenset(
    {"references", "external links", "see also", "further reading", "notes", "footnotes",
     "bibliography", "sources", "citations", "notes and references"}
)
_DROP_LINK_PREFIXES = ("file:", "image:", "media:", "category:")
_INTERLANGUAGE = re.compile(r"^:?[a-z]{2,3}(-[a-z]+)?:")
_DISAMBIG_TEMPLATES = frozenset(
    {"dab", "disamb", "disambig", "disambiguation", "hndis", "geodis", "numberdis",
     "schooldis", "roaddis", "mathdab", "letter-numbercombdisambig", "shipindex", "sia",
     "set index article", "surname", "given name", "mil-unit-dis",
     "species latin name disambiguation"}
)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _is_disambiguation(title: str, wikitext: str) -> bool:
    if title.endswith("(disambiguation)"):
        return True
    for name in re.findall(r"\{\{\s*([^|}\n]+)", wikitext[-3000:]):
        key = name.strip().lower().replace("_", " ")
        if key in _DISAMBIG_TEMPLATES or "disambig" in key:
            return True
    return False


def wikitext_to_text(wikitext: str) -> str:
    """Plain text of an article's wikitext (paragraphs joined by newlines)."""
    import mwparserfromhell

    code = mwparserfromhell.parse(wikitext)
    for section in code.get_sections(levels=[2]):
        headings = section.filter_headings(recursive=False)
        if headings and str(headings[0].title).strip().lower() in _DROP_SECTIONS:
            with contextlib.suppress(ValueError):
                code.remove(section)
    for tag in code.filter_tags(recursive=True):
        if str(tag.tag).strip().lower() in _DROP_TAGS:
            with contextlib.suppress(ValueError):  # already gone with its parent
                code.remove(tag)
    for link in code.filter_wikilinks(recursive=True):
        target = str(link.title).strip().lower()
        if target.startswith(_DROP_LINK_PREFIXES) or _INTERLANGUAGE.match(target):
            with contextlib.suppress(ValueError):
                code.remove(link)
    text = code.strip_code(normalize=True, collapse=True)
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _child_text(page: Element, name: str) -> str | None:
    for child in page:
        if _local(child.tag) == name:
            return child.text or ""
    return None


def _page_fields(page: Element) -> tuple[str, str, str, bool, str]:
    title = _child_text(page, "title") or ""
    ns = _child_text(page, "ns") or "0"
    page_id = _child_text(page, "id") or title
    redirect = any(_local(child.tag) == "redirect" for child in page)
    wikitext = ""
    for child in page:
        if _local(child.tag) == "revision":
            wikitext = _child_text(child, "text") or ""
    return title, ns.strip(), page_id.strip(), redirect, wikitext


def iter_articles(stream: IO[bytes]) -> Iterator[tuple[str, str, str]]:
    """`(page_id, title, plain_text)` for each real article in a dump stream.

    XML and decompression errors propagate (`ParseError`, `EOFError`, `OSError`);
    the caller turns them into a `UserError`.
    """
    root: Element | None = None
    for event, elem in iterparse(stream, events=("start", "end")):
        if root is None:
            root = elem
            continue
        if event != "end" or _local(elem.tag) != "page":
            continue
        title, ns, page_id, redirect, wikitext = _page_fields(elem)
        elem.clear()
        root.clear()  # drop finished pages so memory stays flat
        if ns != "0" or redirect or not title:
            continue
        if wikitext.lstrip()[:9].lower() == "#redirect":
            continue
        if _is_disambiguation(title, wikitext):
            continue
        text = wikitext_to_text(wikitext)
        if text:
            yield page_id, title, text
