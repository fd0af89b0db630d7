"""What mtl-search stores on a study and reads back: attribute names and typed records.

The lowest layer beside ``errors`` and ``values``: every layer may use it. ``attributes``:
the names of the study's user attributes; ``objective``: what a study optimises;
``trial``: the candidate, the per-epoch history and the trial's record; ``study``: the
study's record; ``schema``: the record format's version and the migrations from older ones.
"""
