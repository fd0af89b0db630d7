"""What mtl-search stores on a study and reads back: attribute names and record types.

A leaf of the package: it imports nothing from mtl-search, so every layer may use it
(``attributes``: names of the study's user attributes; ``objective``: what a study optimises).
"""
