"""SuperGLUE (Wang et al., 2019) under the GLUE protocol: the task table and formulations (`tasks`), readers of
the official download and of Hugging Face's `super_glue` (`data`), and the benchmark's metrics (`metrics`).
The runner, training, seeds, medians, resume and reports are GLUE's (`composer_bert/glue/`), picked by
`benchmark: superglue` (`glue/benchmark.py`).
"""
