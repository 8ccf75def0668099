# inspector: the two commands of the README, and a few helpers.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STORE ?= models
DEMO ?= build/demo-data
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install tools proto-tools run test demo-model clean proto bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Builds the default model from synthetic data when the store has none (a few minutes on 2 CPU cores).
demo-model: install
	@if [ -f $(STORE)/default/ACTIVE ]; then echo "model store $(STORE) has a default model"; else \
	  $(BIN)/inspector demo-data --out $(DEMO) --per-class 40 --size 256 && \
	  $(BIN)/inspector train --data $(DEMO) --out $(STORE) --name default --image-size 192 \
	    --epochs-frozen 2 --epochs-finetune 10; fi

run: demo-model
	$(BIN)/inspector serve --store $(STORE) --name default --host 127.0.0.1

# Debian packages the tests drive: promtool and prometheus (deploy checks, the end-to-end scrape), chromium (the
# review station in a real headless browser; Playwright drives it, no browser is downloaded). Installed when missing
# and apt-get can run as root; otherwise those tests fail and say what to install. (Where systemd runs, the prometheus
# package also starts a Prometheus service; CI machines and containers have none.)
TOOL_PACKAGES := prometheus chromium
tools:
	@missing=""; command -v promtool >/dev/null && command -v prometheus >/dev/null || missing="prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -z "$$missing" ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's packages for the tests: $$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "$$missing missing and apt-get cannot run here as root; the tests that need them fail until they" \
	  "are installed (Debian/Ubuntu: sudo apt-get install $(TOOL_PACKAGES))"; fi

# buf, for the lint and breaking-change check of protos/ (buf.yaml; tests/unit/test_proto_lint.py): pinned, from npm
# into build/buf. npm fetches the binary for this platform as an optional dependency; once installed, buf needs no
# network. Without npm the proto lint test fails and says to run this target.
BUF_VERSION := 1.75.0
BUF := build/buf/node_modules/.bin/buf
proto-tools:
	@if [ "$$($(BUF) --version 2>/dev/null)" = "$(BUF_VERSION)" ]; then :; \
	elif command -v npm >/dev/null; then \
	  echo "installing buf $(BUF_VERSION) from npm into build/buf"; \
	  npm install --silent --no-audit --no-fund --save-exact --prefix build/buf @bufbuild/buf@$(BUF_VERSION) || \
	  echo "npm could not install buf; the proto lint test will fail until it is installed (make proto-tools)"; \
	else echo "npm is missing: install Node.js and npm, then run make proto-tools; until then the proto lint" \
	  "test fails"; fi

# tritonclient, for the Open Inference Protocol test that a plant's own client would run
# (tests/integration/test_oip_tritonclient.py): a venv of its own, build/clients-venv, since tritonclient pins
# protobuf<7 and the project needs protobuf>=7. Installed once (the stamp holds the pins, so changing one reinstalls).
CLIENTS_VENV := build/clients-venv
CLIENTS_STAMP := $(CLIENTS_VENV)/.installed
CLIENTS_PACKAGES := 'tritonclient[grpc]==2.73.0' numpy==2.4.6
.PHONY: $(CLIENTS_STAMP)
$(CLIENTS_STAMP):
	@if [ "$$(cat $(CLIENTS_STAMP) 2>/dev/null)" = "$(CLIENTS_PACKAGES)" ]; then :; else \
	  echo "installing $(CLIENTS_PACKAGES) into $(CLIENTS_VENV)" && \
	  $(PYTHON) -m venv $(CLIENTS_VENV) && $(CLIENTS_VENV)/bin/pip install --quiet $(CLIENTS_PACKAGES) && \
	  echo "$(CLIENTS_PACKAGES)" > $(CLIENTS_STAMP); fi

# PyTriton (NVIDIA Triton with a Python callable), for bench/peers.py (this service against Triton on the same ONNX
# export): a venv of its own, build/peers-venv, since PyTriton needs numpy<2 and the project numpy>=2. Its Triton
# Python stub needs $(PYTHON)'s shared libpython (bench/peers.py puts its folder on LD_LIBRARY_PATH). Installed once
# (the stamp holds the pins, so changing one reinstalls).
PEERS_VENV := build/peers-venv
PEERS_STAMP := $(PEERS_VENV)/.installed
PEERS_PACKAGES := nvidia-pytriton==0.7.0 'tritonclient[grpc]==2.73.0' numpy==1.26.4 onnxruntime==1.32.0 \
  opencv-python-headless==4.11.0.86
.PHONY: $(PEERS_STAMP) peers
$(PEERS_STAMP):
	@if [ "$$(cat $(PEERS_STAMP) 2>/dev/null)" = "$(PEERS_PACKAGES)" ]; then :; else \
	  echo "installing $(PEERS_PACKAGES) into $(PEERS_VENV)" && \
	  $(PYTHON) -m venv $(PEERS_VENV) && $(PEERS_VENV)/bin/pip install --quiet $(PEERS_PACKAGES) && \
	  echo "$(PEERS_PACKAGES)" > $(PEERS_STAMP); fi

peers: $(PEERS_STAMP)

# @grpc/grpc-js and @grpc/proto-loader, for the test that a plant's Node.js integration would run
# (tests/integration/test_node_client.py): pinned, from npm into build/node-clients; installed once (the stamp holds
# the pinned versions, so changing a pin reinstalls). Without npm the Node.js client test fails and says to run this.
NODE_CLIENTS := build/node-clients
NODE_CLIENTS_STAMP := $(NODE_CLIENTS)/.installed
NODE_CLIENTS_PACKAGES := @grpc/grpc-js@1.14.7 @grpc/proto-loader@0.8.1
node-clients:
	@if [ "$$(cat $(NODE_CLIENTS_STAMP) 2>/dev/null)" = "$(NODE_CLIENTS_PACKAGES)" ]; then :; \
	elif command -v npm >/dev/null; then \
	  echo "installing $(NODE_CLIENTS_PACKAGES) from npm into $(NODE_CLIENTS)"; \
	  npm install --silent --no-audit --no-fund --save-exact --prefix $(NODE_CLIENTS) $(NODE_CLIENTS_PACKAGES) && \
	  echo "$(NODE_CLIENTS_PACKAGES)" > $(NODE_CLIENTS_STAMP) || \
	  echo "npm could not install the Node.js gRPC client; its test will fail until it is installed (make clients)"; \
	else echo "npm is missing: install Node.js and npm, then run make clients; until then the Node.js client" \
	  "test fails"; fi

.PHONY: clients node-clients
clients: $(CLIENTS_STAMP) node-clients

test: install tools proto-tools clients
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) build .pytest_cache

# Regenerates the gRPC modules from protos/ (they are committed; a test checks they match).
proto: install
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. protos/inspector/v1/inspector.proto \
	  protos/inspector/oip/inference.proto

# Benchmarks on this machine (figures go to bench/RESULTS.md); MODEL defaults to the store's default model.
MODEL ?= $(STORE)/default
bench: demo-model
	$(BIN)/python bench/serve_bench.py --model $(MODEL)
	$(BIN)/python bench/frame_size_bench.py --model $(MODEL)
	$(BIN)/python bench/frame_work_bench.py --model $(MODEL)
	$(BIN)/python bench/lanes_bench.py --model $(MODEL) --backends eager onnx openvino
	$(BIN)/python bench/soak.py --model $(MODEL)
	$(BIN)/python bench/many_streams.py --model $(MODEL)
	$(BIN)/python bench/oip_bench.py --model $(MODEL)
