"""Local Wikipedia: Tantivy indexes of ~100-word passages, and the search behind `web_search`.

Modules (import them directly; this package imports nothing heavy):

- `passages`: the `Passage` / `SourcePassage` records and the 100-word splitter.
- `sources`: readers for JSON Lines (`{title, text}`, `{id, contents}`), DPR TSV,
  and format detection; bad input becomes a one-line `UserError`.
- `mediawiki`: a streamed MediaWiki XML dump reader (wikitext -> plain text).
- `schema`: analyzers, schemas and query construction for each ranking profile.
- `store`: where indexes live on disk, their metadata, atomic swaps, listing, removal.
- `build`: the index builder (temp dir, multi-threaded writer, atomic rename).
- `index`: `WikiIndex.open(name).search(query, k) -> list[Passage]`.
- `tool`: the `web_search` observation text in the paper's format.
- `starter`: the starter index from the vital-articles wheel (`ensure_starter_index`).
- `recall`: recall@k of an index against questions with gold titles.

Not covered: dense retrieval, incremental updates of an existing index.
"""
