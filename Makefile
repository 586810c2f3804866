# kmtool: the two commands of the README, and the steps they are made of.
#
#   make demo    system packages (installed when root, else the apt-get line is printed), .venv,
#                kmtool installed into it, build, boot in QEMU, show the outcome
#   make test    the same set-up, then ruff (lint + format check), mypy and the whole pytest suite
#
# Every step is idempotent and cheap when already done: the package check runs no apt-get when
# nothing is missing, the venv is created once, and pip runs again only when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kmtool-installed

# Extra arguments for pytest, e.g. `make test PYTEST_ARGS="-k image -x"`.
PYTEST_ARGS ?=

.PHONY: demo test setup system-deps venv lint typecheck pytest build run doctor clean

demo: setup
	$(BIN)/kmtool doctor
	$(BIN)/kmtool build
	$(BIN)/kmtool run

test: setup lint typecheck pytest

setup: system-deps venv

system-deps:
	@scripts/install-system-deps

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "error: kmtool needs Python 3.11 or newer as \`$(PYTHON)\`." >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

# pytest's exit status is make's: 0 all passed; 1 failures; 2 interrupted; 3 internal error;
# 4 usage error; 5 no tests collected -- every non-zero status fails the target.
pytest:
	$(BIN)/pytest $(PYTEST_ARGS)

build: venv
	$(BIN)/kmtool build

run: build
	$(BIN)/kmtool run

doctor: venv
	$(BIN)/kmtool doctor

clean:
	rm -rf build
