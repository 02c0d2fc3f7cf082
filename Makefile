# karton: the two commands of the README, plus benchmarks.
# scripts/cargo.sh finds cargo also under sudo (whose PATH leaves out ~/.cargo/bin).
CARGO ?= scripts/cargo.sh
TARGET := x86_64-unknown-linux-gnu
# A static, non-PIE binary: no dynamic loader, no relocations to write at start-up,
# no shared-library pages — it starts faster and stays smaller (docs/architecture.md).
STATIC := LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu \
	RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static"
KARTON := target/$(TARGET)/release/karton
OUT ?= build

.PHONY: all build demo test check deps bench-lifecycle rss clean

all: build

deps:
	@scripts/deps.sh

build: deps
	$(STATIC) $(CARGO) build --release -p karton --target $(TARGET)

# The main job: build, then a short benchmark and audit on the built-in workloads and
# busybox rootfs, and the report that contrasts them.
demo: build
	@mkdir -p $(OUT)/results
	$(KARTON) bench --profile quick -o $(OUT)/results
	$(KARTON) audit --profile quick -o $(OUT)/results/audit-quick.json
	$(KARTON) report $(OUT)/results/*.json -o $(OUT)/report
	@echo "report: $(OUT)/report/index.html (summary: $(OUT)/report/summary.md)"

# Every test, as root on the real kernel, then a short fuzz run of every target; ends with
# `skipped: N` and the reasons of the tests that could not run here (scripts/test.sh).
test: deps
	scripts/test.sh

# What CI checks before the tests: rustfmt, clippy -D warnings, each crate built alone.
check: deps
	scripts/check.sh

# Lifecycle of /bin/true (create + start + wait + delete) against runc and crun.
bench-lifecycle: build
	scripts/bench-lifecycle.sh $(KARTON)

# Peak RSS of `karton create`.
rss: build
	scripts/rss.sh $(KARTON)

clean:
	$(CARGO) clean
	rm -rf $(OUT)
