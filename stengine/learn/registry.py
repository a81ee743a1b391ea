"""Placeholder: being written (see CONTRACT.md)."""
register = build = models = load = export_onnx = None
