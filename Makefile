# The README's two commands:  `make demo`  and  `make test`.
# Both build .venv from the pinned requirement files on first use, and only
# reinstall when those files change. FLAVOUR=gpu installs mxnet-cu112 (CUDA 11.2).
FLAVOUR ?= cpu
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# An interpreter given on the command line (`make demo PY=python3`, as the Docker images
# do) already holds the pinned set: use it as it is and build no .venv.
STAMP := $(if $(filter command line,$(origin PY)),,$(VENV)/.installed-$(FLAVOUR))
# dmlc_tracker, for tools/launch.py only: its own step, so that `make demo` never needs it
# (no download, nothing to fail); `make venv` and `make test` install it.
TRACKER := $(if $(filter command line,$(origin PY)),,$(VENV)/.installed-tracker)
REQS := requirements/base.txt requirements/$(FLAVOUR).txt requirements/test.txt
PYTEST_ARGS ?=

.PHONY: venv test test-quick demo compare compare-sweep clean-venv help

help:
	@echo "make demo    pack, train, export, reload and predict on the demo digits (CPU)"
	@echo "make test    run the test suite, one worker per core"
	@echo "make test-quick  the suite without the tests marked slow"
	@echo "             (how long each takes: README.md, How long things take)"
	@echo "make compare the converged five-variant study, clipping ablation and gradient"
	@echo "             flow on Fashion-MNIST (needs apt-get install dataset-fashion-mnist;"
	@echo "             docs/study.md); make compare-sweep the 7-epoch lr sweep"
	@echo "make venv    only build .venv (FLAVOUR=cpu|gpu, default cpu; docs/install.md)"
	@echo "README.md is the front page; the steps are in docs/workflow.md, common errors"
	@echo "and their fixes in docs/troubleshooting.md"

venv: $(STAMP) $(TRACKER)

# --no-deps: the requirement files are a complete lock (see requirements/base.txt).
$(STAMP): $(REQS) setup.py
	@case "$(FLAVOUR)" in cpu|gpu) ;; *) echo "error: FLAVOUR must be cpu or gpu, not '$(FLAVOUR)'"; exit 2;; esac
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# the two MXNet flavours install the same module: never keep both
	@if { [ -e $(VENV)/.installed-cpu ] || [ -e $(VENV)/.installed-gpu ]; } && [ ! -e $@ ]; then \
		$(PY) -m pip uninstall -y -q mxnet mxnet-cu112 || true; fi
	$(PY) -m pip install -q --no-deps -r requirements/$(FLAVOUR).txt -r requirements/test.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-cpu $(VENV)/.installed-gpu
	@touch $@

# dmlc_tracker: what MXNet's launcher imports but the wheel lacks. A hash-checked download
# of its .py files from pip's index (requirements/tracker.txt): nothing is built.
$(TRACKER): requirements/tracker.txt $(STAMP)
	$(PY) tools/launch.py --install-tracker
	@touch $@

# One pytest worker per core (TEST_JOBS=1 runs serially): each test process runs one
# OpenMP thread, so the serial suite used one core of two. tests/conftest.py keeps a
# file's tests on one worker and every launcher test on one worker.
TEST_JOBS ?= auto
test: $(STAMP) $(TRACKER)
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadgroup tests $(PYTEST_ARGS)

# The edit-test loop: what runs in-process in seconds (models, config, preprocessing,
# data, optim, run folder, sidecar); tests that start tools or train are marked slow.
test-quick: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) tools/demo.py --dir demo

# The study of record (docs/study.md): the converged comparison, the clipping ablation and
# the gradient flow; compare-sweep is the 7-epoch lr sweep.
compare: $(STAMP)
	$(PY) tools/compare_variants.py --data fashion --study converged --out runs/study
	@# 4 seeds left simple-connect's interval at +-0.76 points, over the +-0.7 aimed for
	$(PY) tools/compare_variants.py --data fashion --study converged --out runs/study \
		--seeds 6 --variants mobilenet,simple-connect
	$(PY) tools/compare_variants.py --data fashion --study clipping --out runs/study
	$(PY) tools/compare_variants.py --data fashion --study gradflow --out runs/study

compare-sweep: $(STAMP)
	$(PY) tools/compare_variants.py --data fashion --study sweep --out runs/study

clean-venv:
	rm -rf $(VENV)
