# pgfleet: build, test, lint, demo and benchmark.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
FUNCTIONS := $(notdir $(wildcard functions/*))
BUILD     := build
GOBIN     := $(shell $(GO) env GOPATH)/bin
STATICCHECK_VERSION := 2026.2.2
STATICCHECK := $(GOBIN)/staticcheck
APT_PACKAGES := pgbackrest xfsprogs shellcheck zip util-linux procps
LOCAL     := ./shared/local/cmd/pgfleet-local
TEST_TIMEOUT ?= 30m
export CDK_DISABLE_CLI_TELEMETRY := true

.PHONY: help deps build test lint demo invoke site-up site-down bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

deps: ## install what the tests need when it is missing (Debian packages, Go modules, staticcheck)
	@missing=""; \
	command -v pgbackrest >/dev/null || missing="$$missing pgbackrest"; \
	command -v mkfs.xfs   >/dev/null || missing="$$missing xfsprogs"; \
	command -v shellcheck >/dev/null || missing="$$missing shellcheck"; \
	command -v zip        >/dev/null || missing="$$missing zip"; \
	command -v fsfreeze   >/dev/null || missing="$$missing util-linux"; \
	command -v flock      >/dev/null || missing="$$missing util-linux"; \
	command -v pgrep      >/dev/null || missing="$$missing procps"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@test -x /usr/lib/postgresql/15/bin/postgres || { echo "PostgreSQL 15 server binaries are missing: apt-get install postgresql-15"; exit 1; }
	@command -v moto_server >/dev/null || { echo "moto_server is missing (the S3/EC2/SSM/DynamoDB emulator the tests talk to)"; exit 1; }
	$(GO) mod download
	@[ -x $(STATICCHECK) ] || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2

build: ## build one arm64 bootstrap + zip per function under build/
	@mkdir -p $(BUILD)
	@for fn in $(FUNCTIONS); do \
	  echo "build $$fn"; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -tags lambda.norpc -trimpath -ldflags="-s -w" \
	    -o $(BUILD)/$$fn/bootstrap ./functions/$$fn || exit 1; \
	  rm -f $(BUILD)/$$fn.zip; (cd $(BUILD)/$$fn && zip -q -X ../$$fn.zip bootstrap) || exit 1; \
	  ls -l $(BUILD)/$$fn/bootstrap $(BUILD)/$$fn.zip | awk '{print "  " $$5 " bytes  " $$9}'; \
	done

lint: deps ## gofmt, go vet, staticcheck, shellcheck
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	shellcheck $$(git ls-files '*.sh')

test: deps lint build ## the whole suite: unit, moto-backed adapters, real fsfreeze/PostgreSQL/pgBackRest, end-to-end
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

demo: deps ## bring up the local site, back it up under pgbench load, prune WAL, tear it down
	$(GO) run $(LOCAL) demo

site-up: deps ## start a local site and leave it running (for make invoke)
	$(GO) run $(LOCAL) up

site-down: ## tear the local site down
	$(GO) run $(LOCAL) down

invoke: ## run one handler against the running local site: make invoke FN=backup EVENT=events/backup-constant-input.json
	@[ -n "$(FN)" ] && [ -n "$(EVENT)" ] || { echo "usage: make invoke FN=backup EVENT=events/backup-constant-input.json"; exit 2; }
	$(GO) run $(LOCAL) invoke -fn $(FN) -event $(EVENT)

bench: deps ## benchmarks: writes blocked per backup under pgbench load, host-only and with modelled SSM latency (p50/p99 over 20 backups each), WAL prune of 100,000 objects vs aws s3 rm
	$(GO) test -run '^$$' -bench BenchmarkBackupUnderLoad -benchtime 20x -count 1 -timeout 30m ./shared/local/site/
	$(GO) test -run '^$$' -bench BenchmarkPrune100kVsAWSCLI -benchtime 1x -count 1 -timeout 30m ./shared/walprune/
	$(GO) test -run '^$$' -bench BenchmarkPlan100k -count 1 ./shared/wal/

clean: ## remove build output
	rm -rf $(BUILD)
