"""The terminal app (`edgeagent` with no command): a Textual chat with the agent.

Layout (after oterm): `app.py` (the App and `run_app`), `screens/` (first run,
problems, dialogs, logs), `widgets/` (chat turns, step blocks, sessions,
status bar), `store/` (SQLite history with versioned migrations), `config.py`
(the `[tui]` and `[keys]` tables of config.toml), `runner.py` (the small
`AgentRunner` protocol and the adapter that builds the real one), `turn.py`
(events folded into a turn), `export.py` (Markdown / JSON Lines).

Nothing here is imported by `edgeagent --help`; Textual loads only when the
app opens.
"""
