"""Garbage collection and disk usage: what the store holds, what reaches it, and what may go."""

__all__: list[str] = []
