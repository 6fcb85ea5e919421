"""Frozen pretrained encoders, loaded once per Python process and run in batches."""
