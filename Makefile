# `make demo` (the whole job, offline, on the built-in synthetic corpus) and `make test` (both supported stacks,
# installs included): the README's two set-up commands. `make test-fast` is the inner loop. Why each stack is
# installed the way it is: docs/development.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_CURRENT := .venv-current
PYC := $(VENV_CURRENT)/bin/python
# the current stack's torch and the torchvision build that matches it (docs/development.md)
CURRENT_TORCH := torch==2.14.1 torchvision==0.29.1
OUT := demo_out
# pytest-xdist: two workers (CI has 2 cores), a test file per worker at a time so module fixtures are built once,
# in collection order (the slowest files first: tests/conftest.py), not xdist's most-tests-first.
# More cores: make test XDIST="-n 8 --dist loadfile --no-loadscope-reorder"; serially: make test XDIST=
XDIST ?= -n 2 --dist loadfile --no-loadscope-reorder

.PHONY: install install-current demo demo-gpt test test-fast test-pinned test-current lint clean

$(VENV)/.installed: setup.py requirements/pinned.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements/pinned.txt -e ".[test,loggers,crosscheck]"
	touch $@

$(VENV_CURRENT)/.installed: setup.py requirements/current.txt requirements/deps.py
	$(PYTHON) -m venv $(VENV_CURRENT)
	$(PYC) -m pip install --quiet --upgrade pip
	$(PYC) -m pip install --quiet $(CURRENT_TORCH)
	$(PYC) -m pip install --quiet --no-deps -e .
	$(PYC) -m pip install --quiet --no-deps $$($(PYC) requirements/deps.py --no-deps)
	@echo "pip reports Composer's and streaming's lifted pins (torch, torchvision, transformers) as conflicts;"
	@echo "deps.py --check below fails on any other."
	$(PYC) -m pip install --quiet -c requirements/current.txt $$($(PYC) requirements/deps.py test)
	$(PYC) requirements/deps.py --check
	touch $@

install: $(VENV)/.installed

install-current: $(VENV_CURRENT)/.installed

demo: install
	$(PY) data_prep/train_tokenizer.py --source synthetic --vocab-size 4096 --out $(OUT)/tokenizer --overwrite
	$(PY) data_prep/convert_dataset.py --source synthetic --tokenizer $(OUT)/tokenizer --seq-len 128 --out $(OUT)/shards --overwrite
	rm -rf $(OUT)/runs/tiny
	$(PY) recipes/pretrain.py yamls/pretrain/tiny.yaml

# The causal twin of `demo`: gpt-tiny (Llama's switches, 2 x 128) on the same synthetic corpus, then a sampled
# continuation streamed to the console, then its zero-shot score on questions about such text (a table). Its
# tokenizer is byte-level (GPT-2's kind): case and spaces survive decoding.
demo-gpt: install
	$(PY) data_prep/train_tokenizer.py --source synthetic --vocab-size 4096 --model bytelevel --out $(OUT)/gpt_tokenizer --overwrite
	$(PY) data_prep/convert_dataset.py --source synthetic --tokenizer $(OUT)/gpt_tokenizer --seq-len 128 --out $(OUT)/gpt_shards --objective causal --overwrite
	rm -rf $(OUT)/runs/gpt-tiny
	$(PY) recipes/pretrain.py yamls/pretrain/gpt-tiny.yaml
	$(PY) recipes/generate.py checkpoint=$(OUT)/runs/gpt-tiny/latest-rank0.pt prompt="Geata Sloukglont is a" max_new_tokens=60 temperature=0.8 top_p=0.95 seed=0
	$(PY) data_prep/synthetic_questions.py --out $(OUT)/questions --overwrite
	$(PY) recipes/zero_shot.py yamls/zeroshot/synthetic.yaml checkpoint=$(OUT)/runs/gpt-tiny/latest-rank0.pt

lint: install
	$(VENV)/bin/ruff check .

# Both venvs exist before either suite runs, so the cross-stack test (an export written under one
# transformers major, read under the other) runs in both.
test: lint install-current test-pinned test-current

# The inner loop: lint, then the pinned stack without the scale-out and slow end-to-end tests (under 3 minutes).
test-fast: lint
	$(PY) -m pytest $(XDIST) -m "not scaleout and not slow"

# The pinned stack runs the whole suite; it installs the trackers (.[loggers]), so their tests must run, not skip.
# On both stacks a test that needs what the machine lacks (unshare, the other venv) fails instead of skipping.
test-pinned: install
	@$(PY) requirements/deps.py --stack
	COMPOSER_BERT_REQUIRE_TRACKERS=1 COMPOSER_BERT_REQUIRE_CAPABILITIES=1 $(PY) -m pytest $(XDIST)

# The current stack runs the tests that depend on the stack (the `stack` marker; tests/conftest.py lists them).
test-current: install-current
	@$(PYC) requirements/deps.py --stack
	COMPOSER_BERT_REQUIRE_CAPABILITIES=1 $(PYC) -m pytest $(XDIST) -m stack

clean:
	rm -rf $(OUT) .pytest_cache
