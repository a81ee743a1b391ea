"""Placeholder: being written (see CONTRACT.md)."""
__all__ = ["GridSampler", "RandomSampler", "CellSampler", "TripletSampler"]
GridSampler = RandomSampler = CellSampler = TripletSampler = None
