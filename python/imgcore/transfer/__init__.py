"""Transports: moving images between the store and registries (pull, push) or archives (save, load)."""

__all__: list[str] = []
