"""Fuzz targets over the document parsers: every input gives a valid model or a typed imgcore error.

Bounded by default (the whole directory runs in a few seconds); ``IMGCORE_LONG=1`` runs many more examples.
"""
