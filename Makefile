# cdc-relay: the two commands are `make demo` and `make test` (see README.md).
.PHONY: setup demo demo-failover test test-fast chaos bench lint fmt clean

CARGO ?= cargo
export CDC_RELAY_MOTO_PYTHON ?= $(CURDIR)/.local/venv/bin/python

setup:
	@scripts/setup.sh

## Runs the whole pipeline locally on embedded defaults and verifies the result.
demo: setup
	$(CARGO) run --quiet --bin cdc-relay -- demo

## The same in two regions: ~20 s in, the whole primary cluster dies and the relay fails over.
demo-failover: setup
	$(CARGO) run --quiet --bin cdc-relay -- demo --failover --records 20000

## The whole test suite (unit, integration against mock Kafka + moto, chaos).
test: setup
	$(CARGO) nextest run --all-targets --no-fail-fast

## Everything but the slow suites.
test-fast: setup
	$(CARGO) nextest run --all-targets -E 'not test(/chaos|e2e/)'

## The chaos suite alone on the release build (chaos/README.md): every scenario, then
## chaos/report.json and the table in chaos/README.md. One scenario: make chaos SCENARIO=broker_down
chaos: setup
	rm -rf target/tmp/chaos$(if $(SCENARIO),/$(SCENARIO).json)
	$(CARGO) nextest run --cargo-profile release --test chaos --no-fail-fast \
	  $(if $(SCENARIO),-E 'test(=chaos_$(SCENARIO))',); status=$$?; \
	  python3 chaos/report.py; exit $$status

## Benchmarks (release build): the end-to-end runs (the relay binary against the lab, every case in
## one run; writes BENCHMARKS.md's figures and benches/throughput-vs-concurrency.svg), then the
## criterion micro-benchmarks. CDC_RELAY_BENCH=quick for a smaller plan.
bench: setup
	$(CARGO) bench --bench e2e
	$(CARGO) bench --bench micro

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf .local
