"""optuna-dashboard for mtl-search studies: notes on trials, figures on studies, the server."""
