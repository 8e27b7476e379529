"""Backups of the stateful services: run, list, pull and restore (the files' format is in core.backups)."""
