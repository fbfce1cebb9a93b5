# liverseg — build, install, test and demo.
#   make build                 release libliverseg.so (static Swift runtime, SONAME, export list)
#   make cli                   release `liverseg` command (.build/release/liverseg-cli)
#   make install PREFIX=/usr/local [DESTDIR=...]
#   make wheel                 the Python wheel (library, CLI, OpenBLAS, default model) in dist/
#   make setup test            install what the tests need, then the whole test suite (Swift
#                              unit tests + Python/C/C++ tests); `make test` only runs them
#   make setup-demo demo       install what the demo needs, then segment a real CT from
#                              ../shared/data with the bundled model: mask + pictures
#   make format                apply the formatter (.swift-format); `make lint` checks it
#   make bench                 the benchmark suite against PyTorch and pydensecrf2 (tools/bench.py);
#                              appends a dated section to docs/benchmarks.md
#   make fuzz [FUZZ_SECONDS=600] every libFuzzer harness (tools/fuzz.sh), .build-fuzz/
#   make sanitizers            Swift tests under ASan and TSan, the C API under valgrind

PREFIX ?= /usr/local
DESTDIR ?=
# The version is written once, in include/liverseg.h.
version_part = $(shell sed -n 's/^\#define LIVERSEG_VERSION_$(1) \([0-9]*\)$$/\1/p' include/liverseg.h)
VERSION_MAJOR := $(call version_part,MAJOR)
VERSION_MINOR := $(call version_part,MINOR)
VERSION_PATCH := $(call version_part,PATCH)
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)
SONAME := libliverseg.so.$(VERSION_MAJOR)
PYTHON ?= python3
DATA ?= ../shared/data
OUT ?= out

# The export list and SONAME come from Package.swift; the Swift runtime is linked statically.
SWIFT_RELEASE_FLAGS := -c release -Xswiftc -static-stdlib
LIB := .build/release/libliverseg.so
CLI := .build/release/liverseg-cli

.PHONY: setup setup-demo build cli install wheel test test-swift test-python demo bench fuzz sanitizers format lint clean

# setup: what the tests need; setup-demo: only what building and the demo need.
setup:
	bash tools/setup.sh test

setup-demo:
	bash tools/setup.sh demo

build:
	swift build $(SWIFT_RELEASE_FLAGS) --product liverseg
	@echo "built $(LIB)"

# SwiftPM cannot have two products named liverseg: the executable product is liverseg-cli
# and is installed as bin/liverseg.
cli:
	swift build -c release -Xswiftc -static-stdlib --product liverseg-cli
	@echo "built $(CLI)"

install: build cli
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(CLI) $(DESTDIR)$(PREFIX)/bin/liverseg
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(LIB) $(DESTDIR)$(PREFIX)/lib/libliverseg.so.$(VERSION)
	ln -sf libliverseg.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libliverseg.so
	install -m 644 include/liverseg.h bindings/cpp/liverseg.hpp $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' pkgconfig/liverseg.pc.in \
		> $(DESTDIR)$(PREFIX)/lib/pkgconfig/liverseg.pc
	install -d $(DESTDIR)$(PREFIX)/lib/cmake/liverseg
	for f in liversegConfig liversegConfigVersion; do \
		sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@VERSION_MAJOR@|$(VERSION_MAJOR)|g' cmake/$$f.cmake.in \
			> $(DESTDIR)$(PREFIX)/lib/cmake/liverseg/$$f.cmake; \
	done
	install -d $(DESTDIR)$(PREFIX)/share/liverseg
	install -m 644 models/liver-default.safetensors $(DESTDIR)$(PREFIX)/share/liverseg/

# pyproject.toml + setup.py: the package with libliverseg.so, the `liverseg` program, the
# default model and the OpenBLAS it runs on (see setup.py). pip fetches the build tools.
WHEEL_DIR ?= dist
wheel: build cli
	$(PYTHON) -m pip wheel --no-deps -w $(WHEEL_DIR) .

test: test-swift test-python

test-swift:
	swift test

test-python: build cli
	LIVERSEG_LIBRARY=$(CURDIR)/$(LIB) LIVERSEG_CLI=$(CURDIR)/$(CLI) PYTHONPATH=$(CURDIR)/bindings/python $(PYTHON) -m pytest -q Tests/python

demo: cli
	DATA=$(DATA) OUT=$(OUT) CLI=$(CLI) bash tools/demo.sh

bench: build cli
	LIVERSEG_LIBRARY=$(CURDIR)/$(LIB) LIVERSEG_CLI=$(CURDIR)/$(CLI) PYTHONPATH=$(CURDIR)/bindings/python \
		$(PYTHON) tools/bench.py --data $(DATA) --markdown docs/benchmarks.md

FUZZ_SECONDS ?= 600
fuzz:
	bash tools/fuzz.sh $(FUZZ_SECONDS)

sanitizers:
	bash tools/sanitizers.sh

SWIFT_SOURCES := Package.swift Sources Tests
format:
	swift format format --in-place --recursive $(SWIFT_SOURCES)

lint:
	swift format lint --strict --recursive $(SWIFT_SOURCES)

clean:
	rm -rf .build .build-fuzz .build-asan .build-tsan .build-sanitizers $(OUT) build dist bindings/python/liverseg.egg-info
