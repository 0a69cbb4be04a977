"""Composer algorithms of ours, one module each: `batch_ramp` (Cramming's batch-size ramp by gradient
accumulation) and `seq_length_warmup` (row prefixes growing with the run's progress); `config` holds their
YAML sections.

Nothing is imported here, so loading a config (which imports `algorithms.config`) stays free of torch and
Composer. Import from the modules.
"""
