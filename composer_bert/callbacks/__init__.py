"""Callbacks for pretraining, one module each: peak_flops (MFU denominator), grad_norm (norm and clipping),
budget (wall-clock budget and run progress), nan_guard (stop at a non-finite loss), plus the config schema.

Nothing is imported here on purpose: `composer_bert.config` imports `callbacks.config`, and loading a
config must stay light (no Composer import) and free of import cycles. Import from the modules.
"""
