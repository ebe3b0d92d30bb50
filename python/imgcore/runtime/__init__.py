"""Containers run by a real OCI runtime: a generated ``config.json`` handed to runc (bubblewrap without root).

``spec`` builds the runtime spec from an image config (process, env, user, mounts, namespaces, docker's
defaults); ``host`` finds host helpers by absolute path and gives them imgcore's own environment; ``runc`` wraps
the runtime's commands; ``bwrap`` is the unprivileged fallback. The per-container monitor lives beside them.
Nothing here imports the image/container workflow modules: they call in, never the other way round.
"""

__all__: list[str] = []
