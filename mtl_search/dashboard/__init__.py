"""optuna-dashboard for mtl-search studies: figures on studies, the server (a run writes the trials' notes)."""
