# pyro's build. The README's two commands are `make demo` (build everything,
# drive a workspace through MCP) and `make test` (every test tier). Everything pyro boots is
# built here from Debian packages; nothing prebuilt is downloaded.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

BUILD   := $(CURDIR)/build
ASSETS  := $(BUILD)/assets
PYRO    := $(BUILD)/pyro
VMTEST  := $(BUILD)/vmtest
MCPDRIVE := $(BUILD)/mcpdrive
KERNEL_DIR := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/pyro/kernel
# Environments live where pyro looks for them: $PYRO_CACHE_DIR, else the
# user's cache directory.
PYRO_CACHE := $(or $(PYRO_CACHE_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/pyro)
ENVS_DIR   := $(PYRO_CACHE)/envs
PYRO_VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)

# Go: any Go 1.21 or later on PATH fetches the toolchain go.mod names by
# itself (GOTOOLCHAIN=auto). Without one, Debian's Go 1.19 downloads that
# toolchain as a module into build/go.
GO_VERSION := $(shell sed -n 's/^go \([0-9.]*\)$$/\1/p' go.mod)
GO := $(shell v=$$(go env GOVERSION 2>/dev/null | sed 's/^go//'); \
	if [ -n "$$v" ] && [ "$$(printf '%s\n1.21\n' "$$v" | sort -V | head -n1)" = 1.21 ]; then command -v go; \
	else echo $(BUILD)/go/bin/go; fi)
export CGO_ENABLED := 0

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the build and the tests use: QEMU for the nested-KVM
# harness, acpica-tools to disassemble our ACPI tables in tests, cpio to
# cross-check our initramfs writer; mmdebstrap, fakeroot, uidmap and
# e2fsprogs to build environments' root filesystems.
DEB_DEPS := qemu-system-x86 acpica-tools cpio ca-certificates gcc libc6-dev \
	mmdebstrap fakeroot uidmap e2fsprogs

# Packages whose tests boot guests: run by test-vm, in the nested-KVM harness
# unless the host has hardware KVM. Only these: inside L1 there are no host
# tools (iasl, cpio), and every other package's tests run in test-unit.
VM_PKGS := ./kvm ./vmm ./guest/instance ./mcp/workspace ./cmd/pyro
VM_ENV  := PYRO_KVM=1 PYRO_TEST_KERNEL=$(ASSETS)/vmlinuz PYRO_TEST_BUSYBOX=$(ASSETS)/busybox \
	PYRO_TEST_ENV_MINIMAL=$(ENVS_DIR)/minimal PYRO_TEST_ENV_DEBIAN=$(ENVS_DIR)/debian-12 PYRO_TEST_PYRO=$(PYRO)

# What a pyro run inside the harness needs: vmtest copies every file or tree
# a PYRO_TEST_* variable names into L1 at the same path (the debian-12
# environment, with its kernel, and the pyro binary), and PYRO_CACHE_DIR
# points pyro at that environment there.
HARNESS_ENV := PYRO_CACHE_DIR=$(PYRO_CACHE) PYRO_TEST_ENV_DEBIAN=$(ENVS_DIR)/debian-12 PYRO_TEST_PYRO=$(PYRO)

# Fuzz targets, each run FUZZTIME by test-unit.
# An execution count rather than a duration: a timed -fuzztime can end in a
# spurious "context deadline exceeded" on a loaded two-core machine.
# A target may name its own count (pkg:Fuzz:count) where one execution is
# costly (the layered disk's does file I/O), and "race" after it to run
# under the race detector (the MMIO sequence drives a live worker).
FUZZTIME ?= 300000x
FUZZ := ./vmm:FuzzParseBzImage ./vmm:FuzzSerialRestore:100000x ./vmm/memory:FuzzSlice ./vmm/acpi:FuzzPkgLength ./vmm/snapshot:FuzzDecode \
	./virtio:FuzzQueueWalk ./virtio:FuzzMMIOSequence:20000x:race ./virtio:FuzzTransportStateUnmarshal:100000x ./virtio/blk:FuzzRequest ./virtio/vsock:FuzzTxPacket \
	./virtio/net:FuzzNetTx:50000x ./virtio/net:FuzzNetRx:50000x \
	./netstack:FuzzParseGrant:20000x ./netstack:FuzzDNSAnswer:20000x ./netstack:FuzzGuestPacket:20000x ./netstack:FuzzLinkFrame:20000x \
	./guest/agent:FuzzServeStream:20000x ./guest/agent/proto:FuzzDecodeFrames \
	./guest/agent/proto:FuzzClientAnswers:20000x ./mcp/hostio:FuzzExportArchive:20000x \
	./vmm/disk:FuzzStack:10000x ./mcp/patch:FuzzParse:100000x ./mcp/patch:FuzzApply:100000x \
	./mcp/hostio:FuzzExtract:5000x ./mcp/treediff:FuzzLineDiff:20000x ./mcp/treediff:FuzzDiffTar:20000x \
	./mcp/contract:FuzzWord:20000x ./mcp/term:FuzzRender:50000x ./mcp/redact:FuzzRedact:100000x ./mcp/control:FuzzRequest:20000x \
	./cmd/pyro/hostcfg:FuzzCodexEdit:50000x ./cmd/pyro/hostcfg:FuzzJSONEdit:50000x \
	./kvm:FuzzVCPUStateUnmarshal:100000x ./kvm:FuzzVMStateUnmarshal:100000x

.PHONY: build deps kernel envs demo smoke test test-unit test-vm fuzz lint bench native-bundle host-check clean

build: $(GO)
	$(GO) build -trimpath -ldflags "-s -w -X main.version=$(PYRO_VERSION)" -o $(PYRO) ./cmd/pyro
	$(GO) build -trimpath -o $(VMTEST) ./cmd/vmtest
	$(GO) build -trimpath -ldflags "-s -w" -o $(MCPDRIVE) ./cmd/mcpdrive

$(BUILD)/go/bin/go:
	@echo "==> no Go 1.21+ on PATH: fetching Go $(GO_VERSION) with Debian's Go 1.19"
	@$(MAKE) --no-print-directory deps DEB_DEPS="golang-1.19-go ca-certificates"
	rm -rf $(BUILD)/go $(BUILD)/go.tmp $(BUILD)/gobootstrap && mkdir -p $(BUILD)/gobootstrap
	cd $(BUILD)/gobootstrap && dir=$$(GOPATH=$(BUILD)/gobootstrap GOFLAGS=-modcacherw GO111MODULE=on \
		/usr/lib/go-1.19/bin/go mod download -json golang.org/toolchain@v0.0.1-go$(GO_VERSION).linux-amd64 \
		| sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p') && cp -r "$$dir" $(BUILD)/go.tmp
	chmod -R u+w $(BUILD)/go.tmp && chmod +x $(BUILD)/go.tmp/bin/* $(BUILD)/go.tmp/pkg/tool/*/*
	mv $(BUILD)/go.tmp $(BUILD)/go && rm -rf $(BUILD)/gobootstrap
	$(BUILD)/go/bin/go version

# deps installs the Debian packages that are missing (and only those).
deps:
	@missing=$$(for p in $(DEB_DEPS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "==> installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# kernel fetches the current Debian cloud kernel and busybox, and installs the
# kernel where pyro looks for it (~/.cache/pyro/kernel/vmlinuz).
kernel: build deps
	$(VMTEST) assets --dir $(ASSETS)
	@mkdir -p $(KERNEL_DIR) && cp $(ASSETS)/vmlinuz $(KERNEL_DIR)/.vmlinuz.tmp && \
		cp $(ASSETS)/manifest.json $(KERNEL_DIR)/manifest.json && mv $(KERNEL_DIR)/.vmlinuz.tmp $(KERNEL_DIR)/vmlinuz
	@echo "==> guest kernel: $(KERNEL_DIR)/vmlinuz ($$(sed -n 's/.*"kernel_package": "\(.*\)",/\1/p' $(ASSETS)/manifest.json))"

# envs builds the environments the tests and the demo boot (or checks that
# they are current: then it costs a checksum pass).
envs: build deps
	$(PYRO) env build minimal
	$(PYRO) env build debian-12

# demo is the README's first command: it builds pyro, the guest kernel and
# the debian-12 environment, then drives `pyro mcp serve` with a real MCP
# client (mcpdrive) through a short repro-fix story and prints its
# transcript: natively where the host has hardware KVM, otherwise inside the
# nested-KVM harness (saying why).
demo: kernel envs
	@if $(PYRO) kvm-check >/dev/null 2>&1; then \
		echo "==> this host has hardware KVM: running natively"; \
		$(MCPDRIVE) demo --pyro $(PYRO); \
	else \
		echo "==> pyro kvm-check says this host cannot boot stock kernels natively:"; \
		{ $(PYRO) kvm-check || true; } | sed -n "1p;/FAIL/,+1p"; \
		echo "==> running inside the nested-KVM harness instead (QEMU TCG with an emulated AMD-V CPU; slow, but real KVM)"; \
		$(HARNESS_ENV) $(VMTEST) exec $(MCPDRIVE) demo --pyro $(PYRO); \
	fi

# smoke runs the smoke pack: one scenario per recipe (cold-start, repro-fix,
# parallel, untrusted, review-eval), each driving `pyro mcp serve` over
# stdio with a real MCP client and printing one line with its result and
# duration. Natively with hardware KVM, else in the nested-KVM harness,
# like test-vm. SMOKE_ARGS passes flags (--only NAME, -v).
SMOKE_ARGS ?=
smoke: kernel envs
	@if [ -z "$${PYRO_HARNESS:-}" ] && $(PYRO) kvm-check --kernel $(ASSETS)/vmlinuz >/dev/null 2>&1; then \
		echo "==> smoke: hardware KVM here: running the smoke pack natively"; \
		$(MCPDRIVE) smoke --pyro $(PYRO) $(SMOKE_ARGS); \
	else \
		echo "==> smoke: this host's /dev/kvm cannot boot stock kernels (pyro kvm-check): running the smoke pack in the nested-KVM harness"; \
		$(HARNESS_ENV) $(VMTEST) exec $(MCPDRIVE) smoke --pyro $(PYRO) $(SMOKE_ARGS); \
	fi

test: test-unit test-vm smoke

# test-unit: everything that needs no KVM, with the race detector, plus lint
# and short fuzz runs. VM tests are deferred explicitly (PYRO_KVM=0): test-vm
# runs them.
test-unit: build deps lint fuzz
	PYRO_KVM=0 CGO_ENABLED=1 $(GO) test -race -count=1 ./...

lint: build
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@# unsafe is fenced: only *_unsafe.go files may import it.
	@bad=$$(grep -l '"unsafe"' $$(git ls-files '*.go' | grep -v '_unsafe\(_test\)\?\.go$$') || true); \
	if [ -n "$$bad" ]; then echo "unsafe imported outside *_unsafe.go: $$bad"; exit 1; fi
	@# x/sys/unix for ioctls: KVM ioctls only through kvm/.
	@bad=$$(grep -ln 'SYS_IOCTL' $$(git ls-files '*.go' | grep -v '^kvm/') || true); \
	if [ -n "$$bad" ]; then echo "raw ioctls outside kvm/: $$bad"; exit 1; fi

fuzz: build
	@for t in $(FUZZ); do IFS=: read -r pkg fn n race <<<"$$t"; n=$${n:-$(FUZZTIME)}; \
		cgo=0; [ -z "$$race" ] || cgo=1; echo "==> fuzz $$fn ($$pkg, $$n$${race:+, race})"; \
		CGO_ENABLED=$$cgo $(GO) test $${race:+-race} -run '^$$' -fuzz "^$$fn$$" -fuzztime $$n -fuzzminimizetime 5s $$pkg; \
	done

# test-vm runs the VM tiers: natively on a host with hardware KVM, else in
# the nested-KVM harness. A VM test that cannot run fails (PYRO_KVM=1). The
# harness's own self-tests also boot QEMU inside L1, as make bench does.
# Each package's VMs boot one after another in one L1; under TCG the
# slowest (cmd/pyro) needs more than go test's default 10 minutes.
VM_TIMEOUT ?= 25m
test-vm: kernel envs
	@if [ -z "$${PYRO_HARNESS:-}" ] && $(PYRO) kvm-check --kernel $(ASSETS)/vmlinuz >/dev/null 2>&1; then \
		echo "==> test-vm: hardware KVM here: running the VM tier natively"; \
		$(VM_ENV) $(GO) test -count=1 -p 1 -v -timeout $(VM_TIMEOUT) $(VM_PKGS); \
	else \
		echo "==> test-vm: this host's /dev/kvm cannot boot stock kernels (pyro kvm-check): running the VM tier in the nested-KVM harness"; \
		$(VM_ENV) $(GO) test -count=1 -p 1 -v -timeout $(VM_TIMEOUT) -exec "$(VMTEST) exec" $(VM_PKGS); \
		PYRO_VMTEST_QEMU=1 $(VM_ENV) $(GO) test -count=1 -v -exec "$(VMTEST) exec" ./cmd/vmtest; \
	fi

# bench measures boot times in the harness (or natively with hardware KVM)
# against QEMU's microvm on the same kernel and initramfs, then the running
# VM's figures, among them TCP through pyro's network against QEMU's
# user-mode network (guest/instance BenchmarkNetworkVsQEMU, which boots QEMU
# too: in the harness PYRO_VMTEST_QEMU=1 packs it into L1); medians of 5 runs.
bench: kernel envs
	@if [ -z "$${PYRO_HARNESS:-}" ] && $(PYRO) kvm-check --kernel $(ASSETS)/vmlinuz >/dev/null 2>&1; then \
		$(VM_ENV) $(GO) test -count=1 -run '^$$' -bench . -benchtime 5x -timeout $(VM_TIMEOUT) ./cmd/pyro; \
		$(VM_ENV) $(GO) test -count=1 -run '^$$' -bench . -benchtime 5x -timeout $(VM_TIMEOUT) ./guest/instance; \
		$(VM_ENV) $(GO) test -count=1 -run '^$$' -bench MemorySnapshots -benchtime 1x -timeout $(VM_TIMEOUT) ./mcp/workspace; \
		$(GO) test -count=1 -run '^$$' -bench . -benchtime 5x -timeout $(VM_TIMEOUT) ./mcp/treediff ./vmm/disk; \
	else \
		PYRO_VMTEST_QEMU=1 $(VM_ENV) $(GO) test -count=1 -run '^$$' -bench . -benchtime 5x -timeout $(VM_TIMEOUT) -exec "$(VMTEST) exec" ./cmd/pyro; \
		PYRO_VMTEST_QEMU=1 $(VM_ENV) $(GO) test -count=1 -run '^$$' -bench . -benchtime 5x -timeout $(VM_TIMEOUT) -exec "$(VMTEST) exec" ./guest/instance; \
		PYRO_VMTEST_MEM=6144 $(VM_ENV) $(GO) test -count=1 -run '^$$' -bench MemorySnapshots -benchtime 1x -timeout $(VM_TIMEOUT) -exec "$(VMTEST) exec" ./mcp/workspace; \
		$(GO) test -count=1 -run '^$$' -bench . -benchtime 5x -timeout $(VM_TIMEOUT) ./mcp/treediff ./vmm/disk; \
	fi

# native-bundle writes build/pyro-native-bundle.tar.xz, one archive that
# runs the VM tiers and make bench's VM benchmarks natively on a host with
# hardware KVM and neither Go nor a network (a borrowed machine): a static
# pyro, each VM_PKGS package's test binary (go test -c, static, stripped),
# the kernel and busybox test assets, the minimal environment, and
# scripts/native-bundle's run.sh and README.txt. There: tar -xf it, then
# pyro-native-bundle/run.sh (or run.sh --quick: the kvm and vmm tiers and the
# boot benchmark). debian-12 is too big to carry: its tests are listed as not
# run. xz rather than zstd, so that a host without zstd unpacks it; over
# BUNDLE_MAX_MIB it fails, since such machines take 64 MiB of uploads.
BUNDLE_NAME := pyro-native-bundle
BUNDLE_DIR  := $(BUILD)/$(BUNDLE_NAME)
BUNDLE      := $(BUILD)/$(BUNDLE_NAME).tar.xz
BUNDLE_MAX_MIB := 60
native-bundle: kernel
	$(PYRO) env build minimal
	@# A package whose tests use the VM gate but is missing from VM_PKGS
	@# would be left out silently (cmd/vmtest's self-tests are the harness's).
	@missing=$$(for d in $$(git ls-files '*_test.go' | xargs grep -l 'kvmtest\.' | xargs -n1 dirname | sort -u); do \
		case " $(VM_PKGS) ./cmd/vmtest " in *" ./$$d "*) ;; *) echo "./$$d";; esac; done); \
	if [ -n "$$missing" ]; then echo "native-bundle: packages with VM tests that VM_PKGS lacks:" $$missing; exit 1; fi
	rm -rf $(BUNDLE_DIR) $(BUNDLE) && mkdir -p $(BUNDLE_DIR)/tests $(BUNDLE_DIR)/assets $(BUNDLE_DIR)/envs/minimal
	@for p in $(VM_PKGS); do n=$$(echo $${p#./} | tr / -); echo "==> go test -c $$p: tests/$$n.test"; \
		$(GO) test -c -trimpath -ldflags "-s -w" -o $(BUNDLE_DIR)/tests/$$n.test $$p; done
	cp $(PYRO) $(BUNDLE_DIR)/pyro
	cp -p $(ENVS_DIR)/minimal/manifest.json $(ENVS_DIR)/minimal/vmlinuz $(ENVS_DIR)/minimal/initrd.cpio \
		$(ENVS_DIR)/minimal/rootfs.ext4 $(BUNDLE_DIR)/envs/minimal/
	cp -p $(ASSETS)/busybox $(BUNDLE_DIR)/assets/
	@# The same kernel twice is one file (a hard link, which tar stores once).
	if cmp -s $(ASSETS)/vmlinuz $(BUNDLE_DIR)/envs/minimal/vmlinuz; then \
		ln $(BUNDLE_DIR)/envs/minimal/vmlinuz $(BUNDLE_DIR)/assets/vmlinuz; else cp -p $(ASSETS)/vmlinuz $(BUNDLE_DIR)/assets/; fi
	cp scripts/native-bundle/run.sh scripts/native-bundle/README.txt $(BUNDLE_DIR)/
	{ echo "pyro: $(PYRO_VERSION) ($$(git rev-parse HEAD))"; echo "built: $$(date -u +%Y-%m-%dT%H:%M:%SZ)"; \
		echo "go: $$($(GO) env GOVERSION), CGO_ENABLED=0"; \
		echo "kernel: $$(sed -n 's/.*"kernel_package": "\(.*\)",/\1/p' $(ASSETS)/manifest.json)"; \
		echo "test binaries: $(VM_PKGS)"; echo; cd $(BUNDLE_DIR) && find . -type f ! -name BUILDINFO.txt | sort | xargs ls -l; \
	} >$(BUNDLE_DIR)/BUILDINFO.txt
	tar -C $(BUILD) --sort=name --owner=0 --group=0 --numeric-owner -cf - $(BUNDLE_NAME) | xz -9 -T0 >$(BUNDLE).tmp
	mv $(BUNDLE).tmp $(BUNDLE) && rm -rf $(BUNDLE_DIR)
	@size=$$(stat -c %s $(BUNDLE)); mib=$$(( (size + 1048575) / 1048576 )); \
	if [ $$size -gt $$(( $(BUNDLE_MAX_MIB) * 1048576 )) ]; then \
		echo "native-bundle: $(BUNDLE) is $$mib MiB, over the $(BUNDLE_MAX_MIB) MiB limit (BUNDLE_MAX_MIB)"; rm -f $(BUNDLE); exit 1; fi; \
	echo "==> $(BUNDLE): $$mib MiB (limit $(BUNDLE_MAX_MIB)); on a host with hardware KVM: tar -xf it, then $(BUNDLE_NAME)/run.sh [--quick]"

# host-check registers build/pyro with each chat host whose CLI is on PATH
# (claude, codex, opencode; npm install -g @anthropic-ai/claude-code
# @openai/codex opencode-ai), in a throwaway home and project, and checks
# that the host's own CLI lists it as connected. Not part of make test: CI
# has no host CLIs. It logs in nowhere.
host-check: build
	cmd/pyro/testdata/host-check.sh $(PYRO)

clean:
	rm -rf $(BUILD)
