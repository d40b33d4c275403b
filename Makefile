# Two entry points (see README): `make demo` and `make test`. Both create .venv if missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test typecheck bench fuzz clean fixtures

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/kprobe_demo.py

test: $(STAMP)
	$(BIN)/python -m pytest tests

typecheck: $(STAMP)      # mypy over the package ([tool.mypy] in pyproject.toml); .ci/run runs it before the tests
	$(BIN)/python -m mypy bpfjit

bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-only --benchmark-columns=min,median,mean,rounds

fuzz: $(STAMP)
	$(BIN)/python tests/fuzz_engines.py --programs 100000

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .benchmarks .mypy_cache

fixtures:        # rebuild tests/elf/*.o from their C sources (needs clang and libbpf-dev)
	$(MAKE) -C tests/elf -B
