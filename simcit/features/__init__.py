"""Spark-side builders of the item views (text, image, geo, cf) for the ``features`` stage."""
