# Everything installs itself: Python packages into a venv, the real control plane,
# kwok, Gitea and Helm built from Go modules — all cached in $(CACHE), outside the repo.
CACHE ?= $(or $(RC_CACHE),$(HOME)/.cache/reliability-center)
VENV  := $(CACHE)/venv
PY    := $(VENV)/bin/python
export RC_CACHE := $(CACHE)
export PATH := $(CACHE)/bin:$(VENV)/bin:$(PATH)

.PHONY: setup lock tools cluster cluster-down demo test test-unit test-e2e crds bench clean-cluster

setup:
	bash hack/install-deps.sh
	bash hack/setup-venv.sh $(VENV)

# uv.lock pins every Python package (transitive ones too); setup, CI, the demo and the image install it
# exactly. After a change to pyproject.toml: `make lock`; to move every pin to the newest allowed: `make lock
# UPGRADE=1`. Commit uv.lock.
lock:
	$$(bash hack/setup-venv.sh $(VENV) --uv-only) lock --python python3 $(if $(UPGRADE),--upgrade)

tools:
	bash hack/build-tools.sh >/dev/null

# The cluster's binaries only (kube-*, kubectl, etcd, kwok, kwokctl): hack/cluster.sh builds them.
cluster:
	bash hack/cluster.sh up

cluster-down:
	bash hack/cluster.sh down

clean-cluster:
	bash hack/cluster.sh delete

crds: setup
	$(PY) -m reliability_center.api.crd

# Builds only what it runs (hack/demo.sh names it), not Helm or Argo CD.
demo: setup
	bash hack/demo.sh

# Unit, contract, cluster, Gitea and e2e tests, on three pytest-xdist workers (a file's tests stay
# together); each worker runs its own operator on its own namespaces (t-<worker>-*) and its own Gitea.
# Beside them, on a brand-new cluster of their own, the tests that take a cluster away (an apiserver
# outage): hack/test.sh.
test: setup tools
	PY=$(PY) bash hack/test.sh

test-unit: setup
	$(PY) -m pytest -q tests/unit

test-e2e: setup tools
	$(PY) -m pytest -q tests/e2e

bench: setup tools
	$(PY) bench/bench_mitigation.py
