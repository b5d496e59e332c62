"""Widgets of the chat screen: turns, step blocks, the session list, the status bar."""
