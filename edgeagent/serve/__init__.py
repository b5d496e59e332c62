"""`edgeagent serve`: the whole agent behind the OpenAI chat API.

Modules: `request` (body → `ChatRequest`), `errors` (the OpenAI error shape),
`admission` (bounded queue, `--parallel`), `hosts` (sharing one model between
requests, per-request cancel), `load` (the model as the chosen host),
`batched` (several requests' steps in one llama batch), `jobs` (one run on a
worker thread), `deltas` (agent events → reasoning and answer text), `shapes`
(response bodies), `service` (names, wikis, health), `app` (the FastAPI
routes). The CLI lives in `edgeagent.cli.serve`.
"""
