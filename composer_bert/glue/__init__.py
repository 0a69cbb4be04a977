"""GLUE finetuning and evaluation: task table (`tasks`), config schema (`config`), data readers (`data`),
metrics (`metrics`), one run (`train`), planning, resume and the entry point `run_glue` (`runner`), reports
(`results`).

Names resolve on first use, so importing `composer_bert.glue.config` (every finetuning config load does)
does not pull in torch and Composer.
"""

from __future__ import annotations

from composer_bert.lazy import lazy_attributes

_HOME = {
    "TASKS": "tasks",
    "GlueTask": "tasks",
    "get_task": "tasks",
    "FinetuneConfig": "config",
    "GlueSummary": "results",
    "glue_average": "results",
    "summarize": "results",
    "run_glue": "runner",
}
__all__ = list(_HOME)

__getattr__ = lazy_attributes(__name__, _HOME)
