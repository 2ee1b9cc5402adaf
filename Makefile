# Two commands do all the set-up on a fresh machine:
#   make demo   installs into .venv if needed, then runs the main job on the data shipped in the project
#   make test   installs into .venv if needed, then runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
EXTRAS ?= dev,monailabel,faiss,audit-cleanlab

# constraints.txt is applied to every install, pip's isolated build environments included, through
# PIP_CONSTRAINT. That variable replaces a constraint file configured in pip.conf, so we pass that one on too.
# (`pip config get` reads only some of pip's config files; `pip config list` shows them all)
PIP_CONFIGURED_CONSTRAINT := $(shell $(PYTHON) -m pip config list 2>/dev/null | sed -n "s/^global\.constraint='\(.*\)'$$/\1/p")
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt $(PIP_CONFIGURED_CONSTRAINT)

.PHONY: install demo test clean browser

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; assert (3, 10) <= v <= (3, 12), f"nnunet-diet needs Python 3.10-3.12, {sys.executable} is {v}: make PYTHON=python3.12"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[$(EXTRAS)]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/nnunet-diet pipeline -o demo_out

# The report test renders in a real headless Chromium (Debian's package; needs root and apt-get).
browser:
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium could not be installed: the browser test of the report will be skipped"

test: $(STAMP) browser
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo_out .pytest_cache .hypothesis
