# inspector: the two commands of the README, and a few helpers.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STORE ?= models
DEMO ?= build/demo-data
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install run test demo-model clean

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
	    --epochs-frozen 2 --epochs-finetune 6; fi

run: demo-model
	@test -d $(DEMO) || $(BIN)/inspector demo-data --out $(DEMO) --per-class 40 --size 256
	$(BIN)/inspector predict --model $(STORE)/default $(DEMO)/images/good/good_0000.png \
	  $(DEMO)/images/scratch/scratch_0000.png $(DEMO)/images/spot/spot_0000.png $(DEMO)/images/crack/crack_0000.png

test: install
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) build .pytest_cache
