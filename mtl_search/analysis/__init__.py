"""What is computed from a finished study: its front, the outcome of its trials, the front
refined over more training seeds, and pruning settings replayed on its recorded curves."""
