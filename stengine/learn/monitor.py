"""Placeholder: being written."""
gpu_status = None
