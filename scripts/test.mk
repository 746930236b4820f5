# The steps of scripts/test.sh, as make targets: `make -f scripts/test.mk -k
# -j N` runs them N at a time, each as soon as what it needs is ready (the
# build, its server, redis-cell...). Every recipe is one scripts/step.sh
# call: a log in target/test-logs/, rows in results.tsv for the summary. A
# test step's failure is only reported; a set-up step's failure ($(SETUP))
# also skips the steps that need it.
#
# To add a step: write its target below and add its name to ONCE (run once)
# or to PER_SERVER (a target NAME@% run on every server; $(BIN) is the
# server's binary, $* its name). Start order is the order of `all`.
SERVERS ?= redis-7.0 valkey-9 redis-8.2.3 redis-7.2.6 redis-7.4.1 valkey-8.0.1
PER_SERVER := suites cluster matrix node limitlion
# The longest first. Order is priority: make starts a target whose
# prerequisites were still running when it passed it only on its next pass
# over `all`, so the long ones must come before the many per-server steps.
ONCE := python python-differential python-without-module seeds limitlion-itself snippets crossversion rush unit doctests profiles deps-sh fmt clippy
# Servers that need no build; the others are built (niced, one at a time) by
# `servers`, and their steps come last.
PREBUILT := $(filter redis-7.0 valkey-9 redis-8.2.3,$(SERVERS))
BUILT := $(filter-out $(PREBUILT),$(SERVERS))
all: servers release cell $(ONCE) $(foreach s,$(PREBUILT) $(BUILT),$(PER_SERVER:%=%@$(s)))

L := target/test-logs
STEP := scripts/step.sh
SETUP := STEP_BLOCKS=1 scripts/step.sh
BIN = $$(cat $(L)/bin/$*)
THREADS ?= 2
# First of this run's 1,400 ports for clusters (scripts/test.sh draws it).
PORTS ?= 23000
NEXTEST = cargo nextest run -P ci --binaries-metadata $(L)/binaries.json \
  --cargo-metadata $(L)/metadata.json --tool-config-file test-sh:$$STEP_NEXTEST --test-threads $(THREADS) -E
MODULE = THROTTLE_MODULE=$$PWD/target/ci/libredis_throttle.so
.PHONY: all build servers release cell clients $(ONCE)

# ------------------------------------------------------------ set-up
# The workspace, every target, once, in the ci profile (Cargo.toml), linted
# as it builds (clippy-driver wraps rustc for the workspace's crates: the
# clippy step reads the warnings here). First the fault-injection variant of
# the module (THROTTLE.FAULT, for tests/ops.rs): the same target dir, so only
# the module crate is built twice (cargo rebuilds it when the features flip).
# By hand, the same wrapper avoids rebuilding the workspace's crates.
build:
	@$(SETUP) - build 'export RUSTC_WORKSPACE_WRAPPER=clippy-driver && \
	  cargo build --profile ci -p redis-throttle --features fault-injection && mkdir -p target/fault && \
	  cp target/ci/libredis_throttle.so target/fault/ && \
	  cargo build --profile ci --workspace --all-targets && \
	  grep -q "THROTTLE.FAULT PANIC" target/fault/libredis_throttle.so && \
	  ! grep -q "THROTTLE.FAULT PANIC" target/ci/libredis_throttle.so && \
	  cargo nextest list --cargo-profile ci --workspace --list-type binaries-only \
	    --message-format json >$(L)/binaries.json && \
	  cargo metadata --format-version 1 --all-features --no-deps >$(L)/metadata.json'
servers: # the built servers, one at a time
	@$(SETUP) - build-servers 'for s in $(BUILT); do nice -n 10 scripts/servers.sh bin $$s >/dev/null || exit 1; done'
$(BUILT:%=bin@%): servers
bin@%:
	@$(SETUP) $* server 'scripts/servers.sh bin $* >$(L)/bin/$*'
release: # fat LTO, as users build it, for the profiles step: long on a busy machine
	@STEP_TIMEOUT=2400 $(SETUP) - build-release 'nice -n 10 cargo build --release -p redis-throttle'
cell: # redis-cell 0.5.0, the peer tests/cell.rs compares with
	@$(SETUP) - build-redis-cell 'scripts/cell.sh >$(L)/cell.path'
clients: # the client matrix's pinned clients (snippets use them too)
	@$(SETUP) - clients 'clients/matrix/setup.sh'

# ------------------------------------------------------- once
fmt:
	@$(STEP) - fmt 'cargo fmt --all -- --check'
unit: build # every test binary that needs no server
	@$(STEP) - unit '$(NEXTEST) "!(kind(test) & (package(redis-throttle) | package(rush)))"'
doctests: build
	@$(STEP) - doctests 'RUSTC_WORKSPACE_WRAPPER=clippy-driver cargo test --doc --workspace --profile ci'
deps-sh:
	@$(STEP) - deps.sh 'bash scripts/tests/deps.sh'
profiles: build release
	@$(STEP) - profiles 'scripts/tests/profiles.sh target/ci/libredis_throttle.so target/release/libredis_throttle.so'
crossversion: build $(SERVERS:%=bin@%)
	@$(STEP) - crossversion 'THROTTLE_SERVERS="$(foreach s,$(SERVERS),$(s)=$$(cat $(L)/bin/$(s));)" \
	  $(MODULE) $(NEXTEST) "package(redis-throttle) & binary(=crossversion)"'
rush: build
	@$(STEP) - rush '$(MODULE) $(NEXTEST) "package(rush) & kind(test)"'
snippets: build clients
	@$(STEP) - snippets 'SNIPPETS_CLUSTER_PORT=$$(($(PORTS) + 1)) $(MODULE) scripts/snippets.sh'
python-without-module: # python.sh sets up target/py-client-venv under a lock: these three share it
	@$(STEP) - python.sh-without-module 'bash scripts/python.sh --without-module'
python: build # all but the LimitLion differential, which runs beside it
	@$(STEP) - python.sh '$(MODULE) bash scripts/python.sh -k "not test_differential_and_mixed_fleet"'
python-differential: build
	@$(STEP) - python.sh-differential '$(MODULE) PYTHON_EXAMPLES=0 bash scripts/python.sh -k test_differential_and_mixed_fleet'
seeds: build # each seed's own tests and examples, one import changed
	@$(STEP) - seeds '$(MODULE) scripts/seeds.sh'
limitlion-itself: # LimitLion's suite on LimitLion itself (a plain server): proves the harness
	@$(STEP) - limitlion-itself 'scripts/limitlion.sh --limitlion'
clippy: build # as `cargo clippy --workspace --all-targets -- -D warnings`: no warning in the build
	@$(STEP) - clippy 'if grep -E -A12 "^(warning|error)(\[[A-Za-z0-9_]+\])?: " $(L)/-.build.log; then \
	  echo "clippy: the build has warnings (above)"; exit 1; fi; echo "clippy: no warnings in the build"'

# ------------------------------------------------- on every server
# tests/limitlion_lua.rs's random sequences: 24,000 calls on one server of
# each way Lua prints numbers (7.0's %.17g; 7.2+ and Valkey's fpconv), 4,000
# on the others.
FULL_LUA := $(filter redis-7.0,$(SERVERS)) $(firstword $(filter-out redis-7.0,$(PREBUILT) $(BUILT)))
suites@%: build bin@% cell # tests/*.rs but cluster and crossversion
	@$(STEP) $* suites 'REDIS_SERVER=$(BIN) CELL_MODULE=$$(cat $(L)/cell.path) \
	  LIMITLION_CALLS=$(if $(filter $*,$(FULL_LUA)),24000,4000) \
	  THROTTLE_FAULT_MODULE=$$PWD/target/fault/libredis_throttle.so $(MODULE) \
	  $(NEXTEST) "package(redis-throttle) & kind(test) & !binary(=cluster) & !binary(=crossversion)"'
cluster@%: build bin@%
	@$(STEP) $* cluster 'REDIS_SERVER=$(BIN) $(MODULE) $(NEXTEST) "package(redis-throttle) & binary(=cluster)"'
matrix@%: build bin@% clients # its clusters on ports of their own: PORTS + 200 x (place in SERVERS)
	@$(STEP) $* client-matrix 'i=0; for s in $(SERVERS); do i=$$((i + 1)); [ $$s = $* ] && break; done; \
	  MATRIX_SERVER=$(BIN) MATRIX_CLUSTER_PORT=$$(($(PORTS) + 1 + 200 * i)) $(MODULE) clients/matrix/run.sh'
node@%: build bin@% # the Node package: node-redis, ioredis, the Express and Fastify apps; npm pack on the first server
	@$(STEP) $* node 'REDIS_SERVER=$(BIN) RUSH=$$PWD/target/ci/rush $(MODULE) \
	  NODE_SKIP_PACK=$(if $(filter $*,$(firstword $(PREBUILT) $(BUILT))),0,1) scripts/node.sh'
limitlion@%: build bin@% # LimitLion's own suite (888) on the drop-in; the 20,000-call differential runs once, in python.sh
	@$(STEP) $* limitlion 'REDIS_SERVER=$(BIN) LIMITLION_DIFFERENTIAL=0 $(MODULE) scripts/limitlion.sh'
