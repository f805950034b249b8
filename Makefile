# Two entry points (see README): `make study` runs the study, `make test` runs the tests.
# Each creates the virtual environment it needs first.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# glibc serves every block above its mmap threshold (128 KiB, adapting up to 32 MiB) with a fresh mmap and
# unmaps it on free, so each large tensor is faulted in page by page at every use; kept on the heap, the
# world classifier's training step takes 0.78 s instead of 1.29 s on a 2-core AMD EPYC without AVX-512,
# with identical weights (python benchmarks/allocator.py; docs/pipeline.md, "Timings").
export MALLOC_MMAP_THRESHOLD_ := 4294967296
export MALLOC_TRIM_THRESHOLD_ := 4294967296

.PHONY: install constraints data study test lint browser

install: $(VENV)/.installed

# Every package at the exact version of constraints.txt, so a new release cannot break a fresh run.
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet pip==26.3
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# Rewrite constraints.txt from the current environment (after changing pyproject.toml's dependencies).
constraints: install
	{ sed -n '1,2p' constraints.txt; $(PY) -m pip freeze --exclude-editable; } > constraints.new
	mv constraints.new constraints.txt

# Generate the world (deterministic) unless data/ already matches data.dvc, insist that its bytes
# hash to the pin committed in data.dvc (every machine must produce the very same bytes), and
# record it in the DVC cache. Needs the environment (`make install`, or PY=... with dvc on PATH).
data:
	dvc status --quiet data.dvc || $(PY) -m streamdit.data --out data --config params.yaml
	$(PY) -m streamdit.data --out data --check data.dvc
	dvc commit --force --quiet data.dvc

# Ends with the wall time of every stage that ran and where the report is (also after a failure).
# THREADS: PyTorch's (and MKL's) threads in every stage. The thread count decides how sums are split,
# so the committed results' bytes need the 2 they were made with; more threads run faster and train
# weights that differ by rounding (docs/pipeline.md, "Reproducibility across machines").
THREADS ?= 2

study: install
	@start=$$(date +%s); \
	$(MAKE) data && OMP_NUM_THREADS=$(THREADS) dvc repro; status=$$?; \
	$(PY) -m streamdit.pipeline summary --since $$start; exit $$status

lint: install
	ruff format --check .
	ruff check .

# The web demo's test drives Debian's headless Chromium through chromedriver: install them when missing
# (CI runs as root on Debian).
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends chromium chromium-driver; }

test: lint browser
	$(PY) -m pytest
