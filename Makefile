# karton: the two commands of the README, plus benchmarks.
CARGO ?= cargo
KARTON := target/release/karton
OUT ?= build

.PHONY: all build demo test deps bench-lifecycle rss clean

all: build

deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --release -p karton

# The main job: build, then a short benchmark and audit on the built-in workload and rootfs.
demo: build
	@mkdir -p $(OUT)
	rm -rf $(OUT)/demo-bundle
	scripts/mkbundle.sh $(OUT)/demo-bundle $(KARTON)
	sed -i 's/"sh"$$/"sh", "-c", "echo hello from karton: $$(hostname), pid $$$$, uid $$(id -u)"/' $(OUT)/demo-bundle/config.json
	$(KARTON) --root $(OUT)/state run --bundle $(OUT)/demo-bundle demo-$$$$

# Every test, as root on the real kernel.
test: deps
	$(CARGO) test --workspace --no-fail-fast

# Lifecycle of /bin/true (create + start + wait + delete) against runc and crun.
bench-lifecycle: build
	scripts/bench-lifecycle.sh $(KARTON)

# Peak RSS of `karton create`.
rss: build
	scripts/rss.sh $(KARTON)

clean:
	$(CARGO) clean
	rm -rf $(OUT)
