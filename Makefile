# exam-results: `make up` runs the whole local system, `make test` runs every test.
# `make` alone lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
PYTEST ?= $(PYTHON) -m pytest -q
CARGO ?= cargo
GO ?= $(or $(shell command -v go 2>/dev/null),/usr/local/go/bin/go)
YEAR ?= $(shell date -d 'next year' +%Y 2>/dev/null || echo 2027)

export VENV

##@ Local system

.PHONY: up
up: ## Start PostgreSQL primary + replica, PgBouncer, schema, 1M-row seed, the functions (results page included) and Prometheus
	@.ci/install-deps.sh
	@.ci/stack.sh up

.PHONY: down
down: ## Stop everything, keeping the data
	@.ci/stack.sh down

.PHONY: clean
clean: ## Stop everything and remove all local state (.local/)
	@.ci/stack.sh clean

.PHONY: status
status: ## Show which parts of the local system are up
	@.ci/stack.sh status

##@ Database operations (against the local system from `make up`)

.PHONY: partitions
partitions: ## Make sure the partition for YEAR exists (default: next year), e.g. make partitions YEAR=2027
	@sql/ops/partitions.sh ensure $(YEAR)

.PHONY: detach-year
detach-year: ## Detach (CONCURRENTLY) and archive an old year's partition: make detach-year YEAR=2018
	@sql/ops/partitions.sh detach $(YEAR)

.PHONY: load-csv
load-csv: ## Load a CSV of results into one year, all or nothing: make load-csv FILE=results.csv YEAR=2026
	@sql/ops/load-csv.sh "$(FILE)" $(YEAR)

.PHONY: backup
backup: ## Write a consistent pg_dump (custom format) to .local/backups/exam_results-<timestamp>.dump
	@sql/ops/backup.sh

.PHONY: restore
restore: ## Restore a dump into a fresh database: make restore FILE=.local/backups/....dump [REPLACE=1 swaps it in]
	@sql/ops/restore.sh "$(FILE)" $(if $(REPLACE),--replace,)

.PHONY: replica-lag
replica-lag: ## Show replication lag, measured on both the primary and the replica
	@sql/ops/replica-lag.sh

##@ Benchmarks

.PHONY: bench
bench: ## Results-day benchmarks against the local system (first `RATE_LIMIT_PER_SECOND=0 make up`); writes bench-results/
	@.ci/bench/run.sh

##@ Capacity planning

PLAN_ARGS ?=
BENCH_JSON ?= $(lastword $(sort $(wildcard bench-results/*.json)))
GO_OK = @test -x "$$(command -v $(GO))" || { echo "Go not found (GO=$(GO)): install Go 1.24 or later, or set GO=/path/to/go" >&2; exit 1; }
export GOTOOLCHAIN ?= local

.PHONY: plan
plan: deps ## Results-day plan for the chart's values: summary, table and chart in knative/planner/out/ (PLAN_ARGS="-set k=v -p peak=9000 ...")
	$(GO_OK)
	@cd knative && PLAN_CWD=$(CURDIR) $(GO) run ./planner/cmd/plan $(PLAN_ARGS)

.PHONY: plan-recommend
plan-recommend: deps ## Search get-result's knobs for the cheapest setting that meets the objective (a few minutes)
	$(GO_OK)
	@cd knative && PLAN_CWD=$(CURDIR) $(GO) run ./planner/cmd/plan -q -recommend $(PLAN_ARGS)

.PHONY: plan-validate
plan-validate: deps ## One pod of the planner's model vs a `make bench` sweep (BENCH_JSON, default the newest bench-results/*.json)
	$(GO_OK)
	@test -n "$(BENCH_JSON)" || { echo "no bench-results/*.json: run make bench (sweep scenario) or set BENCH_JSON" >&2; exit 1; }
	@cd knative && PLAN_CWD=$(CURDIR) $(GO) run ./planner/cmd/plan -validate $(abspath $(BENCH_JSON)) -capacity $(abspath knative/planner/capacity.json)

##@ Tests

.PHONY: deps
deps: ## Install what the tests need (apt packages, .venv with Python tools)
	@.ci/install-deps.sh

.PHONY: test
test: deps test-rust test-database test-knative test-crossplane test-observability test-cicd test-bench test-planner test-apiserver test-instructions test-browser ## Run every test (what CI runs)

.PHONY: test-rust
test-rust: ## Unit and integration tests of the functions (real PostgreSQL + PgBouncer)
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace

.PHONY: test-database
test-database: ## Partition upkeep, bulk load all-or-nothing, backup/restore, table migration (throwaway PostgreSQL)
	$(PYTEST) sql/tests

.PHONY: test-planner
test-planner: ## Capacity planner: Knative's autoscaler scenarios, results day against the chart's values (Go)
	$(GO_OK)
	cd knative && $(GO) test ./planner/...

.PHONY: test-knative
test-knative: ## Render, lint and validate the Helm chart and Dockerfile offline; Knative's own Go code validates the Services
	$(PYTEST) knative/tests
	@test -x "$(GO)" || { echo "test-knative: the Knative checks need Go 1.24 or later (knative/go.mod): install it from https://go.dev/dl/ (or set GO=/path/to/go)" >&2; exit 1; }
	cd knative && GOTOOLCHAIN=local PYTHON="$(abspath $(PYTHON))" "$(GO)" test -count=1 ./checks/...

.PHONY: test-crossplane
test-crossplane: ## Validate and render the Crossplane XRD and compositions offline (pytest, then crossplane render + upstream Go types)
	$(PYTEST) crossplane/tests
	crossplane/checks/run.sh

.PHONY: test-observability
test-observability: ## promtool rule tests, dashboard checks
	$(PYTEST) grafana/tests

.PHONY: test-cicd
test-cicd: ## Promotion program against a real Prometheus, workflow lint
	$(PYTEST) .github/promote/tests

.PHONY: test-bench
test-bench: ## Unit tests of the benchmark harness (parsing, recommendations); no load is generated
	$(PYTEST) .ci/bench/tests

.PHONY: test-apiserver
test-apiserver: ## The chart, its upgrades and the compositions' objects applied to a real kube-apiserver (needs Go)
	@test -x "$(GO)" || { echo "test-apiserver: skipped, Go is not installed (install Go 1.24 or later from https://go.dev/dl/, or set GO=/path/to/go)"; exit 0; }; \
	cd knative/apiserver && GOTOOLCHAIN=local PYTHON="$(abspath $(PYTHON))" "$(GO)" test -count=1 -timeout 30m ./...

.PHONY: test-instructions
test-instructions: ## get-result's instructions per request (callgrind) within the margin of .ci/bench/regression/reference.json
	$(PYTEST) -s .ci/bench/regression

.PHONY: instructions-reference
instructions-reference: ## Re-measure get-result's instructions per request into the reference (commit it when the change is intended)
	UPDATE_REFERENCE=1 $(PYTEST) -s .ci/bench/regression

BROWSER_TESTS := functions/results-page/tests/browser

.PHONY: test-browser
test-browser: deps ## The results page in Debian's Chromium (Playwright): lookups, no-JS form, 429, axe-core, page weight, Lighthouse; screenshots in $(BROWSER_TESTS)/artifacts
	@command -v npm >/dev/null || { echo "test-browser: npm not found (Debian: apt-get install npm)" >&2; exit 1; }
	cd $(BROWSER_TESTS) && npm ci --no-audit --no-fund --loglevel=error
	$(CARGO) test -p exam-results --test browser -- --ignored --nocapture

.PHONY: lint
lint: ## rustfmt check and clippy with warnings denied
	$(CARGO) fmt --all --check
	$(CARGO) clippy --all-targets -- -D warnings

##@ Help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
	  /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)
