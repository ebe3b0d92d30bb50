"""The unpacked-layer cache shared by containers (overlay lowerdirs, copy-driver baselines)."""

__all__: list[str] = []
