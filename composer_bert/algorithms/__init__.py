"""Composer algorithms of ours: `BatchRamp`, Cramming's batch-size ramp by gradient accumulation."""

from composer_bert.algorithms.batch_ramp import BatchRamp

__all__ = ["BatchRamp"]
