"""Where edgeagent keeps its files.

Config, data (models, wiki indexes, chat history) and cache directories come
from platformdirs; `EDGEAGENT_HOME` overrides all three (tests point it at a
tmp dir) as `$EDGEAGENT_HOME/{config,data,cache}`. Nothing here creates files
except `ensure()`.
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "edgeagent"


def _home() -> Path | None:
    value = os.environ.get("EDGEAGENT_HOME")
    return Path(value).expanduser() if value else None


def config_dir() -> Path:
    home = _home()
    if home is not None:
        return home / "config"
    import platformdirs

    return Path(platformdirs.user_config_dir(APP))


def data_dir() -> Path:
    home = _home()
    if home is not None:
        return home / "data"
    import platformdirs

    return Path(platformdirs.user_data_dir(APP))


def cache_dir() -> Path:
    home = _home()
    if home is not None:
        return home / "cache"
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP))


def config_file() -> Path:
    return config_dir() / "config.toml"


def models_dir() -> Path:
    return data_dir() / "models"


def wiki_dir() -> Path:
    return data_dir() / "wiki"


def history_db() -> Path:
    return data_dir() / "history.sqlite3"


def ensure(path: Path) -> Path:
    """Create `path` (a directory) and its parents; return it."""
    path.mkdir(parents=True, exist_ok=True)
    return path
