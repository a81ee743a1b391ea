"""Placeholder: being written."""
fit = None
