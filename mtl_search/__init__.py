"""mtl-search: find the sharing structure of a multi-task network with a multi-objective search."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Imported on first use so that `import mtl_search` stays cheap (no torch, no optuna).
    if name == "load":
        from mtl_search.export.loading import load

        return load
    raise AttributeError(f"module 'mtl_search' has no attribute {name!r}")


__all__ = ["__version__", "load"]
