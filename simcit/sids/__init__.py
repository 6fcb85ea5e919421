"""Semantic IDs: formatting, collision resolution, quality figures (the ``assign-ids`` stage)."""
