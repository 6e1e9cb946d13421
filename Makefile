# mlserve developer entry points. Every target creates/updates .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARCH   ?= lambda
# make demo CANARY=25 [CANARY_MODE=shadow]: a canary rollout, ending with the rollout status table
CANARY ?=
CANARY_MODE ?= split
# make test runs the suite on every core (pytest-xdist; one worker per test file)
TEST_WORKERS ?= auto

.PHONY: demo test lint bench verify venv model clean

$(STAMP): pyproject.toml constraints.txt requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "mlserve needs Python >= 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -e '.[dev]' -c constraints.txt
	@touch $(STAMP)

venv: $(STAMP)

model: $(STAMP)
	$(BIN)/python -m mlserve train-example --if-missing

demo: $(STAMP)
	$(BIN)/python -m mlserve demo --architecture $(ARCH) $(if $(CANARY),--canary $(CANARY) --canary-mode $(CANARY_MODE))

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m mlserve bench

verify: $(STAMP)
	$(BIN)/python -m mlserve verify

clean:
	rm -rf $(VENV) .cache build *.egg-info
