# Two entry points for a newcomer: `make demo` (the whole job, offline, on the built-in synthetic
# corpus) and `make test`. Both create .venv and install the package into it first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OUT := demo_out

.PHONY: install demo test lint clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,loggers]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) data_prep/train_tokenizer.py --source synthetic --vocab-size 4096 --out $(OUT)/tokenizer --overwrite
	$(PY) data_prep/convert_dataset.py --source synthetic --tokenizer $(OUT)/tokenizer --seq-len 128 --out $(OUT)/shards --overwrite
	rm -rf $(OUT)/runs/tiny
	$(PY) recipes/pretrain.py yamls/pretrain/tiny.yaml

lint: install
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest

clean:
	rm -rf $(OUT) .pytest_cache
