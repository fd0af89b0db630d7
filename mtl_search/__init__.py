"""mtl-search: find the sharing structure of a multi-task network with a multi-objective search."""

__version__ = "0.1.0"
