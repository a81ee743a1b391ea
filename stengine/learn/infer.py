"""Placeholder: being written."""
predict = embed = None
