"""Screens over the chat: first run, problems, dialogs, logs."""
