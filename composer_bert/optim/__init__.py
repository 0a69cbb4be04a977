"""Optimization: `config.py` (the `optimizer:` and `scheduler:` sections), `optimizer.py` (AdamW and its
parameter groups) and `schedulers.py` (budget-aware learning-rate shapes).

Nothing is imported here, so loading a config (which imports `optim.config`) stays free of torch and Composer.
"""
