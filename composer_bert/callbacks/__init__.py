"""Composer callbacks and logger destinations of ours, one module each: `budget` (wall-clock budget stop),
`grad_norm` (gradient norm and clipping, pretraining and GLUE), `nan_guard` (stop at a non-finite loss),
`metrics_file` (metrics.jsonl and the loss curve), `progress` (progress bars); `config` holds the
`callbacks:` and `loggers:` sections.

Nothing is imported here on purpose: `composer_bert.pretrain.config` imports `callbacks.config`, and loading a
config must stay light (no Composer import) and free of import cycles. Import from the modules.
"""
