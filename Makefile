# Two set-up commands for a fresh machine (see README):
#   make repro   create .venv, install the pinned stack, run `dvc repro` on the embedded default
#   make test    create .venv, install the pinned stack, run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export TOKENIZERS_PARALLELISM ?= false

PLOTS_TEMPLATE := .cache/retrofit/plots/offline.html
APT := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || echo sudo apt-get)

.PHONY: setup repro test test-all test-deps rehearsal scale-study plots plots-diff readme-results lock clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

repro: setup
	$(BIN)/dvc repro

# Debian's chromium (headless browser test of the offline plots page), npm (fetches vega for that page) and
# openssh-server (the SSH remote tests/test_sharing.py starts on loopback; its S3 remote, SeaweedFS, is a pip wheel).
test-deps:
	@missing=""; command -v chromium >/dev/null || missing="chromium"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	if [ -n "$$missing" ]; then \
		($(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq $$missing) \
		|| echo "warning: could not install$$missing; the tests that need them will be skipped outside CI"; \
	fi

test: setup test-deps
	$(BIN)/python -m pytest -m "not slow"

test-all: setup test-deps
	$(BIN)/python -m pytest

# The paper path offline (profiles/paper.yaml + profiles/rehearsal.yaml) in a throwaway copy: llama.cpp's server as
# the OpenAI endpoint, 2-process training, sharded MMTEB stand-in, a queued sweep (retrofit.rehearsal).
rehearsal: setup
	$(BIN)/python -m pip install --quiet -e ".[qwen]"   # the served instruct model, 1.1 GB
	$(BIN)/python -m retrofit.rehearsal

# The CPU scale study (profiles/cpu-scale.yaml, issue 29) in a kept copy under .cache/scale-study (rerun to resume),
# then reports/scale_study.md and reports/scale_study/ here (retrofit.study). The default's outputs never change.
scale-study: setup
	$(BIN)/python -m retrofit.study

# dvc plots show, offline: inline vega into a template, render, and screenshot the page into reports/.
plots: setup
	@test -f $(PLOTS_TEMPLATE) || $(BIN)/python -m retrofit.plots_html template $(PLOTS_TEMPLATE)
	$(BIN)/dvc plots show --html-template $(PLOTS_TEMPLATE) -o reports/plots
	$(BIN)/python -m retrofit.plots_html screenshot reports/plots/index.html reports/plots.png

# Overlay an experiment's (or a revision's) curves on the workspace's, offline: make plots-diff EXP=<name or rev>
plots-diff: setup
	@test -n "$(EXP)" || { echo "usage: make plots-diff EXP=<experiment name or git revision>"; exit 2; }
	@test -f $(PLOTS_TEMPLATE) || $(BIN)/python -m retrofit.plots_html template $(PLOTS_TEMPLATE)
	$(BIN)/dvc plots diff $(EXP) --html-template $(PLOTS_TEMPLATE) -o reports/plots_diff
	$(BIN)/python -m retrofit.plots_html screenshot reports/plots_diff/index.html reports/plots_diff.png

# The README's results block, regenerated from reports/results/ (after the plot stage).
readme-results: setup
	$(BIN)/python -m retrofit.report readme README.md reports/results

lock: setup
	{ head -n 2 requirements.lock; $(BIN)/python -m pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean-venv:
	rm -rf $(VENV)
