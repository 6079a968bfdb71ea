# Two commands do everything (see README):
#   make ablation   set up, then run the main job (the quick ablation on the Kang split)
#   make test       set up (with Ray), then run the test suite
#   make setup-ray  the optional Ray executor (runner --executor ray): setup plus '.[ray]'
PYTHON ?= python3
VENV ?= .venv
# CPU build by default. GPU users: make setup TORCH="torch==2.13.0 --index-url <your CUDA wheel index>"
TORCH ?= torch==2.13.0
PROFILE ?= quick
JOBS ?= 1
PY := $(VENV)/bin/python
# the kernel every committed notebook names (tests/test_ablation.py checks they agree)
KERNEL_NAME := Python 3 (scgen-ablation)

.PHONY: setup setup-ray ablation test ui lab benchmark reference-env benchmark-reference benchmark-reference-quick clean

setup: $(VENV)/.installed

# torch goes in first and is then pinned by a constraints file, so that no
# later resolve can swap it for another (multi-GB CUDA) build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(TORCH)
	$(PY) -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/torch-pin.txt
	$(PY) -m pip install -c $(VENV)/torch-pin.txt -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "$(KERNEL_NAME)"
	touch $@

# Ray goes in with the same torch constraint, so it can never swap the torch build
setup-ray: $(VENV)/.installed-ray

$(VENV)/.installed-ray: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -c $(VENV)/torch-pin.txt -e '.[dev,ray]'
	touch $@

ablation: setup
	$(PY) -m scgen_ablation.runner --profile $(PROFILE) --jobs $(JOBS)

# two workers (pytest-xdist), each test file on one of them so that a file's fixtures are
# built once; conftest gives each worker one torch thread
TEST_WORKERS ?= 2

test: setup setup-ray
	@$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile tests; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a failure here"; exit 1; fi; \
	exit $$status

# the converged record's rows as result runs (tag source=record), beside the quick runs;
# once per change of the committed record (ablation_record --to-mlflow is idempotent)
mlruns/.record-in-mlflow: benchmarks/results/ablation_full.csv | setup
	mkdir -p mlruns
	$(PY) -m scgen_ablation.ablation_record --to-mlflow
	touch $@

ui: setup mlruns/.record-in-mlflow
	mkdir -p mlruns
	@$(PY) -c "from scgen_ablation import tracking; print('Runs with the R² columns:', *tracking.view_links(), sep='\n  ')"
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db \
		--default-artifact-root ./mlruns/artifacts --host 127.0.0.1 --port 5000

# at the project root, so that notebooks/ and the executed runs/ are both in reach;
# --allow-root: containers often run as root, and the server listens on loopback only
lab: setup
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --allow-root --ServerApp.root_dir=$(CURDIR) \
		--LabApp.default_url=/lab/tree/notebooks

benchmark: setup
	$(PY) benchmarks/speed.py

clean:
	rm -rf runs/ .pytest_cache

# The authors' scGen (PyPI 2.1.0) in its own environment, for benchmarks/reference.py.
reference-env: .venv-reference/.installed
.venv-reference/.installed: benchmarks/reference/requirements.txt
	$(PYTHON) -m venv .venv-reference
	.venv-reference/bin/pip install -r benchmarks/reference/requirements.txt
	.venv-reference/bin/pip install --no-deps setuptools==69.5.1
	touch $@

benchmark-reference-quick: setup reference-env
	$(PY) benchmarks/reference.py --quick

benchmark-reference: setup reference-env
	$(PY) benchmarks/reference.py
