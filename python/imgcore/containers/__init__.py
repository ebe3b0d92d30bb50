"""Containers: writable roots on top of images, their exec, commit and export."""

__all__: list[str] = []
