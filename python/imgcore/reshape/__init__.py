"""Reshaping images without a container: squash, flatten, rebase, append, config changes.

Every operation reads an image from the store, builds the new one through the one builder
(:func:`imgcore.image.builder.append`), verifies every blob and diff_id of the result, and only then tags it.
"""

__all__: list[str] = []
