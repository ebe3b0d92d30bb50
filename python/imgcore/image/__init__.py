"""Images: the value model, the catalog and resolver, config changes, the one builder, sizes and import."""

__all__: list[str] = []
