# ferry.runc: every target does its own setup on a fresh Debian 12/13 machine (run as root).
# The two commands a newcomer needs: `make demo` (a live migration on the built-in lab) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
COLLECTIONS := $(CURDIR)/collections
COLLECTION_LINK := $(COLLECTIONS)/ansible_collections/ferry/runc
SANITY_ROOT := $(CURDIR)/.build/sanity/ansible_collections/ferry/runc
MOLECULE := $(CURDIR)/extensions/molecule
# The lab's run directory and first SSH port (src; dst is the next port); the inventory reads the same variables.
export FERRY_LAB_DIR ?= $(HOME)/.cache/ferry-runc/lab
export FERRY_LAB_PORT_BASE ?= 2222
# molecule keeps the lab's state (shared by all scenarios) here, one per lab.
export MOLECULE_EPHEMERAL_DIRECTORY ?= $(FERRY_LAB_DIR).molecule
LAB_SSH := ssh -i $(FERRY_LAB_DIR)/id_ed25519 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
           -o LogLevel=ERROR root@127.0.0.1

# Packages this machine needs: QEMU and debootstrap for the lab VMs, shellcheck and rsync for
# ansible-test sanity, gcc and static libc for the example workloads, openssl for per-migration TLS certificates,
# python3-venv for the venv.
HOST_PACKAGES := qemu-system-x86 qemu-utils debootstrap e2fsprogs openssh-client openssl rsync git shellcheck \
                 python3-venv gcc libc6-dev

# mitogen's strategy plugins in the venv, for the molecule scenarios that run under mitogen_linear (their molecule.yml).
export FERRY_MITOGEN_STRATEGY_PLUGINS := $(CURDIR)/$(VENV)/lib/python$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')/site-packages/ansible_mitogen/plugins/strategy

# The lowest ansible-core series meta/runtime.yml allows, with its own environment (tests/core-versions.sh).
LOWEST_CORE := 2.16
export FERRY_LOWEST_CORE_BIN := $(CURDIR)/.venv-core-$(LOWEST_CORE)/bin

export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_CONFIG := $(MOLECULE)/ansible.cfg

.PHONY: help host-packages venv collection lint sanity unit molecule test lab-up lab-down \
        lab-ssh-src lab-ssh-dst examples demo

help:
	@echo "make demo    run a live migration on the built-in two-VM lab"
	@echo "make test    run every test: lint, sanity, unit, molecule scenarios on the lab"
	@echo "make lab-up | lab-down | lab-ssh-src | lab-ssh-dst    manage the lab by hand"
	@echo "make bench-lab | bench      the benchmark on the lab (bench/README.md; not part of make test)"

host-packages:
	@missing=$$(for p in $(HOST_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed' || echo "$$p"; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing host packages:" $$missing; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed
$(VENV)/.installed: tests/requirements-dev.txt | host-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r tests/requirements-dev.txt
	touch $@

collection: $(COLLECTION_LINK)
$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn $(CURDIR) $@

lint: venv collection
	$(BIN)/ansible-lint

# ansible-test needs the collection under ansible_collections/ferry/runc and sees only files git knows:
# the working tree (committed or not, minus what .gitignore drops) is copied there and staged.
sanity: venv
	mkdir -p $(SANITY_ROOT)
	rsync -a --delete --exclude=.git --filter=':- .gitignore' ./ $(SANITY_ROOT)/
	cd $(SANITY_ROOT) && { [ -d .git ] || git init -q; } && git add -A
	$(BIN)/python tests/sanity/seed_pip_bootstrap.py
	cd $(SANITY_ROOT) && $(BIN)/ansible-test sanity --venv --python $$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')

unit: venv collection
	$(BIN)/python -m pytest -q tests/unit

# molecule's state says "created" whenever an earlier run did not reach its destroy step, even when those VMs are
# long gone (a reboot, a killed job): it is dropped so that create.yml, idempotent, always checks the real lab.
molecule: venv collection host-packages core-$(LOWEST_CORE)-venv
	rm -rf $(MOLECULE_EPHEMERAL_DIRECTORY)
	$(BIN)/molecule test --all

test: venv
	tests/run-all.sh lint sanity unit $(CORE_STEPS) collection-install docsite molecule

# The lab's own playbooks (molecule's default scenario runs the same ones); they are idempotent, and with other
# FERRY_LAB_DIR/FERRY_LAB_PORT_BASE values they run a second lab beside the first.
lab-up: venv collection host-packages
	$(BIN)/ansible-playbook $(MOLECULE)/default/create.yml

lab-down: venv collection
	$(BIN)/ansible-playbook $(MOLECULE)/default/destroy.yml

# The example workloads, static binaries for the demo's and the benchmark's containers.
examples: host-packages
	$(MAKE) -C examples/workloads OUT=$(CURDIR)/.build/examples

lab-ssh-src:
	$(LAB_SSH) -p $(FERRY_LAB_PORT_BASE)

lab-ssh-dst:
	$(LAB_SSH) -p $$(( $(FERRY_LAB_PORT_BASE) + 1 ))

# The README's first command: the lab, the workloads, then examples/demo.yml (see examples/README.md). Run it again
# and the trainer moves back.
demo: venv collection host-packages examples lab-up
	$(BIN)/ansible-playbook examples/demo.yml

# The benchmark (bench/README.md; not part of `make test`): memstress moved with the seed's flow and each strategy
# of ours. bench-lab: the lab profile, sized for the lab under TCG (64 and 256 MiB, busy, six methods, about an hour
# with the lab up), results in docs/benchmarks/lab. bench: the full profile, for VMs with hardware virtualization.
# A 1 GiB workload needs VMs with more memory than the default: stop a smaller lab first (make lab-down).
.PHONY: bench bench-lab
bench bench-lab: export FERRY_LAB_MEMORY_MB ?= 3072
bench: venv collection host-packages examples lab-up
	$(BIN)/ansible-playbook bench/bench.yml -e bench_report_out=$(CURDIR)/docs/benchmarks

bench-lab: venv collection host-packages examples lab-up
	$(BIN)/ansible-playbook bench/bench.yml -e bench_profile=lab -e bench_report_out=$(CURDIR)/docs/benchmarks/lab

# The support window (issue 20): ansible-test sanity, the unit tests and the installed collection's docs and
# playbook syntax under the lowest ansible-core that meta/runtime.yml allows and under the newest release, each in
# its own .venv-core-<series> (tests/core-versions.sh).
CORE_SERIES := $(LOWEST_CORE) 2.21
CORE_STEPS := $(foreach series,$(CORE_SERIES),core-$(series)-sanity core-$(series)-unit core-$(series)-install)
.PHONY: core-versions $(CORE_STEPS) core-$(LOWEST_CORE)-venv
core-versions: $(CORE_STEPS)

# The faults scenario runs one migration with the lowest series' ansible-playbook (its case 13).
core-$(LOWEST_CORE)-venv:
	tests/core-versions.sh $(LOWEST_CORE) venv

$(filter %-sanity,$(CORE_STEPS)): core-%-sanity: host-packages
	tests/core-versions.sh $* sanity

$(filter %-unit,$(CORE_STEPS)): core-%-unit: collection
	tests/core-versions.sh $* unit

$(filter %-install,$(CORE_STEPS)): core-%-install:
	tests/core-versions.sh $* install

# The collection as a user installs it, and its docs (issue 20).
.PHONY: collection-install docsite changelog docsite-pages
collection-install: venv
	tests/collection-install.sh

docsite: venv collection
	tests/docsite.sh

# What docsite checks is made by these: CHANGELOG.md from changelogs/, docs/docsite/rst/ from docs/*.md.
changelog: venv collection
	tests/changelog.sh

docsite-pages: venv
	$(BIN)/python tests/docsite_pages.py
