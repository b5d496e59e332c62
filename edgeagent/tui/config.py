"""The app's settings from config.toml: the `[tui]` table and the `[keys]` table.

```toml
wiki = "starter"            # top-level: the wiki index to search (default "starter")

[tui]
theme = "textual-dark"      # or "textual-light", or any Textual theme name
votes = 1                   # candidates sampled per step (self-consistent voting)
temperature = 0.4
max_steps = 5
export_dir = "~/edgeagent-exports"   # default: <data dir>/exports

[keys]                      # action = "key" (Textual key names, comma for several)
new_chat = "ctrl+n"
cancel = "escape"
```

Unknown actions in `[keys]` and bad values are reported (in `problems`) and
ignored: a config typo never stops the app. Not covered: per-screen keys.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeagent import locations

# action id -> (default key, what it does); the ids are the binding ids. Keys the
# prompt Input uses itself (ctrl+a/e/k/d/u/w/x/c/v) are avoided.
DEFAULT_KEYS: dict[str, tuple[str, str]] = {
    "new_chat": ("ctrl+n", "New chat"),
    "cancel": ("escape", "Stop the answer"),
    "rename_chat": ("f2", "Rename chat"),
    "delete_chat": ("f8", "Delete chat"),
    "toggle_sidebar": ("ctrl+b", "Show or hide the chat list"),
    "toggle_details": ("ctrl+t", "Expand or fold all step details"),
    "export_markdown": ("ctrl+s", "Export the chat as Markdown"),
    "export_jsonl": ("f6", "Export trajectories as JSON Lines"),
    "copy_answer": ("ctrl+y", "Copy the last answer"),
    "copy_code": ("f7", "Copy the last code block"),
    "switch_model": ("f3", "Switch model"),
    "switch_wiki": ("f4", "Switch wiki index"),
    "settings": ("f5", "Set votes, temperature, max steps"),
    "show_logs": ("f12", "Show logs"),
    "toggle_dark": ("f10", "Toggle dark / light theme"),
}


@dataclass
class TuiConfig:
    theme: str = "textual-dark"
    votes: int = 1
    temperature: float = 0.4
    max_steps: int = 5
    wiki: str = "starter"
    export_dir: Path | None = None
    keys: dict[str, str] = field(default_factory=dict)  # action -> key (overrides only)
    problems: list[str] = field(default_factory=list)

    def exports(self) -> Path:
        return self.export_dir or locations.data_dir() / "exports"

    def keymap(self) -> dict[str, str]:
        """Textual keymap: binding id -> keys, defaults merged with overrides."""
        return {action: self.keys.get(action, key) for action, (key, _) in DEFAULT_KEYS.items()}


def _number(table: dict[str, Any], name: str, kind: type, default: Any, low: float,
            high: float, problems: list[str]) -> Any:
    value = table.get(name, default)
    try:
        value = kind(value)
        if not low <= value <= high:
            raise ValueError
    except (TypeError, ValueError):
        problems.append(f"[tui] {name} = {table.get(name)!r} is not a number in "
                        f"{low}..{high}; using {default}")
        return default
    return value


def load_config(path: Path | None = None) -> TuiConfig:
    """Read config.toml (missing file: defaults)."""
    path = path or locations.config_file()
    cfg = TuiConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return cfg
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        cfg.problems.append(f"cannot read {path}: {exc}; using defaults")
        return cfg
    if isinstance(data.get("wiki"), str) and data["wiki"]:
        cfg.wiki = data["wiki"]
    tui = data.get("tui", {})
    if isinstance(tui, dict):
        if isinstance(tui.get("theme"), str):
            cfg.theme = tui["theme"]
        cfg.votes = _number(tui, "votes", int, cfg.votes, 1, 64, cfg.problems)
        cfg.temperature = _number(tui, "temperature", float, cfg.temperature, 0.0, 2.0,
                                  cfg.problems)
        cfg.max_steps = _number(tui, "max_steps", int, cfg.max_steps, 1, 50, cfg.problems)
        if isinstance(tui.get("export_dir"), str):
            cfg.export_dir = Path(tui["export_dir"]).expanduser()
    keys = data.get("keys", {})
    if isinstance(keys, dict):
        for action, key in keys.items():
            if action not in DEFAULT_KEYS:
                cfg.problems.append(f"[keys] {action!r} is not an action "
                                    f"(actions: {', '.join(DEFAULT_KEYS)})")
            elif not isinstance(key, str) or not key.strip():
                cfg.problems.append(f"[keys] {action} must be a key name like \"ctrl+n\"")
            else:
                cfg.keys[action] = key.strip()
    return cfg
