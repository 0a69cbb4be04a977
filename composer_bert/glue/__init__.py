"""GLUE finetuning and evaluation: task table, data readers, metrics, the per-task trainer and the report.

Nothing heavy is imported here, so loading `glue.config` stays free of torch and Composer. Import from the
modules (`glue.finetune.run_glue`, `glue.results.glue_average`, ...).
"""
