#!/bin/sh
# run.sh: pyro's VM test tiers and benchmarks, natively, from the bundle that
# make native-bundle writes (README.txt next to this script says more). It
# needs a Linux host with hardware KVM (Intel VT-x or AMD-V); no Go, no network.
#
#   ./run.sh                 every test binary, then the benchmarks
#   ./run.sh --quick         the kvm and vmm tiers and the boot benchmark only
#   ./run.sh --no-bench      tests only;  --bench-only: benchmarks only
#   ./run.sh --results DIR   where logs and the summary go (default ./results-DATE)
#   ./run.sh --only 'kvm vmm' --run REGEX   these binaries only (tests/NAME.test),
#                            and only the tests that match (as go test -run)
#
# Exit status: 0 everything that ran passed; 1 a test or benchmark failed, or
# a VM test could not run; 2 this host cannot run pyro's VMs (kvm-check says why).

# Benchmarks, by name: shell patterns on top-level benchmark names. A pattern
# that matches nothing in this build is listed as such at the end, so the
# benchmarks still being written are picked up once a bundle has them. Those
# that need the debian-12 environment (the last line) skip at their gate and
# are listed as not run, unless PYRO_TEST_ENV_DEBIAN names one.
BENCH_PATTERNS='BenchmarkBootVsQEMU BenchmarkMemorySnapshots BenchmarkPyroRunTrue BenchmarkWorkspaceCreate* BenchmarkRestore*
BenchmarkFork* BenchmarkSnapshot* BenchmarkExecTrue BenchmarkShellRoundTrip BenchmarkVsockThroughput
BenchmarkVMMMemory BenchmarkNetworkVsQEMU
BenchmarkMCPWorkspace BenchmarkVirtioBlk BenchmarkServiceHTTPReady'
QUICK_BENCH_PATTERNS='BenchmarkBootVsQEMU BenchmarkMemorySnapshots'
# The test binaries (tests/NAME.test) that --quick runs.
QUICK_TESTS='kvm vmm'
# Tests that reach debian-12 through pyro's cache rather than through
# PYRO_TEST_ENV_DEBIAN, so that their gate cannot skip them: BINARY:PATTERN,
# the pattern as go test -skip takes it. Skipped, and listed as not run,
# when no debian-12 environment is given.
DEBIAN_ONLY='cmd-pyro:TestRunEnv/^python$'

BENCHTIME=${PYRO_BUNDLE_BENCHTIME:-5x}
TEST_TIMEOUT=${PYRO_BUNDLE_TEST_TIMEOUT:-30m}

set -u -f # -f: the patterns above are for case, never for file names
B=$(cd "$(dirname "$0")" && pwd)
quick='' tests=1 bench=1 RES='' only='' run=''
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--no-bench) bench='' ;;
	--bench-only) tests='' ;;
	--results) [ $# -ge 2 ] || { echo "run.sh: --results needs a directory" >&2; exit 2; }; RES=$2; shift ;;
	--results=*) RES=${1#--results=} ;;
	--only) [ $# -ge 2 ] || { echo "run.sh: --only needs binary names" >&2; exit 2; }; only=$2; shift ;;
	--run) [ $# -ge 2 ] || { echo "run.sh: --run needs a pattern" >&2; exit 2; }; run=$2; shift ;;
	-h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
allbins=$(ls "$B/tests" | sed -n 's/\.test$//p')
bins=$allbins
if [ -n "$quick" ]; then
	BENCH_PATTERNS=$QUICK_BENCH_PATTERNS
	bins=$QUICK_TESTS
fi
[ -n "$only" ] && bins=$only allbins=$only
[ -n "$RES" ] || RES=$B/results-$(date +%Y%m%d-%H%M%S)
mkdir -p "$RES" || exit 2
RES=$(cd "$RES" && pwd)

say() { printf '==> %s\n' "$*" | tee -a "$RES/run.log"; }
indent() { sed 's/^/    /' | tee -a "$RES/run.log"; }

# Host facts first: every report needs them, a refused host's included.
ncpu() { getconf _NPROCESSORS_ONLN 2>/dev/null || grep -c '^processor' /proc/cpuinfo; }
cpuinfo() { sed -n "s/^$1[[:space:]]*: //p" /proc/cpuinfo | head -n1; }
meminfo() { awk -v k="$1:" '$1 == k {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo; }
{
	echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "bundle:  $(sed -n 's/^pyro: //p' "$B/BUILDINFO.txt" 2>/dev/null)"
	echo "cpu:     $(cpuinfo 'model name')"
	echo "vendor:  $(cpuinfo vendor_id)"
	echo "cores:   $(ncpu) online"
	echo "kernel:  $(uname -srm)"
	echo "memory:  $(meminfo MemTotal) total, $(meminfo MemAvailable) available"
	echo "virt:    CPU flag $(grep -o -w -m1 -E 'vmx|svm' /proc/cpuinfo || echo none); modules: $(ls /sys/module 2>/dev/null | grep '^kvm' | tr '\n' ' ')"
	echo "os:      $(sed -n 's/^PRETTY_NAME=//p' /etc/os-release 2>/dev/null | tr -d '"')"
	echo "thp:     $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
	echo "user:    $(id -un) (uid $(id -u))"
} >"$RES/host.txt"
say "pyro native bundle in $B; results in $RES"
indent <"$RES/host.txt"

# Can this host run pyro's VMs at all? /dev/kvm, then pyro's own check,
# which tells hardware KVM from PVM and says what to fix.
kvmcheck() { "$B/pyro" kvm-check --kernel "$B/assets/vmlinuz" >"$RES/kvm-check.txt" 2>&1; }
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
	if [ -e /dev/kvm ]; then
		why="$(id -un) cannot read and write /dev/kvm ($(ls -l /dev/kvm)): add the user to its group, or run as root"
	else
		why="there is no /dev/kvm (KVM is not loaded, or this is a VM without nested virtualization)"
	fi
	kvmcheck
	say "STOP: $why. pyro kvm-check says:"
	indent <"$RES/kvm-check.txt"
	exit 2
fi
if ! kvmcheck; then
	say "STOP: this host cannot boot pyro's VMs (a stock kernel needs hardware KVM; PVM is not enough). pyro kvm-check says:"
	indent <"$RES/kvm-check.txt"
	exit 2
fi
say "$(head -n1 "$RES/kvm-check.txt")"

# A throwaway cache, home and TMPDIR: the tests write nothing outside them.
# PYRO_BUNDLE_KEEP=1 keeps them for a look afterwards.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pyro-bundle.XXXXXX") || exit 2
cleanup() { if [ -n "${PYRO_BUNDLE_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK/cache/envs" "$WORK/home" "$WORK/tmp" || exit 2
# A copy, not the bundle's own: a test may refresh the environment's
# initramfs (when the agent differs) or damage a copy on purpose.
cp -Rp "$B/envs/minimal" "$WORK/cache/envs/minimal" || exit 2
debian=${PYRO_TEST_ENV_DEBIAN:-}
if [ -n "$debian" ]; then
	# A debian-12 environment from elsewhere (CACHE/envs/debian-12), linked
	# into the cache for the tests that reach it through pyro's cache.
	ln -s "$debian" "$WORK/cache/envs/debian-12" || exit 2
	say "debian-12 environment: $debian (PYRO_TEST_ENV_DEBIAN)"
fi
PYRO_CACHE_DIR=$WORK/cache "$B/pyro" env list 2>&1 | indent

cores=$(ncpu)
memgib=$(awk '$1 == "MemAvailable:" {print int($2 / 1048576)}' /proc/meminfo)
par=$cores
[ "${memgib:-0}" -ge 1 ] && [ "$memgib" -lt "$par" ] && par=$memgib

# The variables make test-vm sets, pointing into this bundle. With every
# environment here the gate is PYRO_KVM=1 (a VM test that cannot run
# fails). Without debian-12 it is left unset, so the tests that need it skip
# naming PYRO_TEST_ENV_DEBIAN, and the summary fails every other VM test
# that skipped: the same verdict as PYRO_KVM=1 for all the rest.
# PYRO_VMTEST_L1=1: as in the harness's L1 the source tree is absent, and
# the tests that read it skip (they ran in the unit tier).
testenv() (
	unset CI PYRO_KVM PYRO_TEST_ENV_DEBIAN XDG_CACHE_HOME XDG_CONFIG_HOME XDG_STATE_HOME XDG_DATA_HOME XDG_RUNTIME_DIR
	[ -n "$debian" ] && export PYRO_KVM=1 PYRO_TEST_ENV_DEBIAN="$debian"
	export PYRO_TEST_KERNEL="$B/assets/vmlinuz" PYRO_TEST_BUSYBOX="$B/assets/busybox" \
		PYRO_TEST_ENV_MINIMAL="$WORK/cache/envs/minimal" PYRO_TEST_PYRO="$B/pyro" \
		PYRO_CACHE_DIR="$WORK/cache" PYRO_VMTEST_L1=1 HOME="$WORK/home" TMPDIR="$WORK/tmp"
	mkdir -p "$WORK/cwd/$name" && cd "$WORK/cwd/$name" && exec "$B/tests/$name.test" "$@"
)

# runbin KIND NAME ARGS...: runs tests/NAME.test with ARGS in a scratch
# directory; output to the console and RES/NAME.KIND.log, status to .rc.
runbin() {
	kind=$1 name=$2
	shift 2
	log=$RES/$name.$kind.log
	say "$kind: $name.test $*"
	start=$(date +%s)
	{ testenv "$@" 2>&1; echo $? >"$log.rc"; } | tee "$log"
	say "$kind: $name.test: exit $(cat "$log.rc") after $(($(date +%s) - start)) s"
}

if [ -n "$tests" ]; then
	for name in $bins; do
		if [ ! -x "$B/tests/$name.test" ]; then
			say "no tests/$name.test in this bundle"
			: >"$RES/$name.test.log" && echo missing >"$RES/$name.test.log.rc"
			continue
		fi
		skip=''
		if [ -z "$debian" ]; then
			for d in $DEBIAN_ONLY; do
				[ "${d%%:*}" = "$name" ] && skip=${skip:+$skip|}${d#*:}
			done
		fi
		[ -n "$skip" ] && printf '%s\n' "$skip" >"$RES/$name.test.run-sh-skipped"
		runbin test "$name" -test.v -test.count=1 -test.timeout="$TEST_TIMEOUT" -test.parallel="$par" \
			${run:+-test.run "$run"} ${skip:+-test.skip "$skip"}
	done
fi

: >"$RES/bench-unmatched.txt"
if [ -n "$bench" ]; then
	matched=' '
	for name in $allbins; do
		re=''
		for bn in $(testenv -test.list '^Benchmark' 2>/dev/null); do
			for p in $BENCH_PATTERNS; do
				case $bn in $p) re=${re:+$re|}$bn matched="$matched$p " && break ;; esac
			done
		done
		[ -n "$re" ] && runbin bench "$name" -test.v -test.run '^$' -test.bench "^($re)\$" \
			-test.benchtime "$BENCHTIME" -test.count=1 -test.timeout="$TEST_TIMEOUT"
	done
	for p in $BENCH_PATTERNS; do
		case $matched in *" $p "*) ;; *) echo "$p" >>"$RES/bench-unmatched.txt" ;; esac
	done
fi

set +f
# The summary. results LOG writes one line per test, subtest or benchmark
# result: STATUS, NAME and a reason (a skip's message; for a failure where
# its result line is and the test's last log entry), tab-separated.
# A SKIP by the VM gate becomes NOTRUN when it names PYRO_TEST_ENV_DEBIAN
# and VMSKIP (a failure) otherwise. -test.v names the test before its
# output whenever another test printed last, which attributes every line.
results() {
	awk '
	function entry(s) { sub(/^[ \t]+[A-Za-z0-9_]+\.go:[0-9]+: /, "", s); return substr(s, 1, 200) }
	/^=== (RUN|CONT|NAME|PAUSE) / { cur = $3; next }
	/^Benchmark[^ \t]*$/ { cur = $1; next }
	/^Benchmark[^ \t]*[ \t]+[0-9]+[ \t]/ { printf "PASS\t%s\t\n", $1; next }
	/^[ \t]*--- (PASS|FAIL|SKIP): / {
		st = $2; sub(/:$/, "", st); n = $3; r = last[n]
		if (st == "SKIP" && gate[n] != "") { st = deb[n] ? "NOTRUN" : "VMSKIP"; r = gate[n] }
		if (st == "FAIL") r = "log line " NR (r == "" ? "" : "; its last log entry: " r)
		printf "%s\t%s\t%s\n", st, n, r
		next
	}
	cur != "" && /^[ \t]+[A-Za-z0-9_]+\.go:[0-9]+: / {
		last[cur] = entry($0)
		if ($0 ~ /SKIPPING VM TEST|VM test deferred/) { gate[cur] = last[cur]; deb[cur] = ($0 ~ /PYRO_TEST_ENV_DEBIAN/) }
	}' "$1"
}
count() { awk -F '\t' -v s="$1" '$1 == s {n++} END {print n + 0}' "$2"; }
list() { # STATUS: "binary: name: reason" lines of every log with that status
	for r in "$RES"/*.log.results; do
		[ -f "$r" ] && awk -F '\t' -v s="$1" -v b="$(basename "$r" .log.results)" \
			'$1 == s {printf "    %s: %s%s\n", b, $2, ($3 == "" ? "" : ": " $3)}' "$r"
	done
}
failed=0
{
	echo
	echo "==> summary (logs in $RES)"
	sed -n '2,7p' "$RES/host.txt" | sed 's/^/    /'
	echo
	printf '    %-22s %7s %6s %6s %6s %8s  %s\n' "" exit passed failed skipped "not run" verdict
} >"$RES/summary.txt"
for log in "$RES"/*.test.log "$RES"/*.bench.log; do
	[ -f "$log" ] || continue
	base=$(basename "$log" .log)
	rc=$(cat "$log.rc" 2>/dev/null || echo '?')
	results "$log" >"$log.results"
	f=$log.results
	fail=$(count FAIL "$f") notrun=$(count NOTRUN "$f") vmskip=$(count VMSKIP "$f")
	[ -f "$RES/$base.run-sh-skipped" ] && notrun=$((notrun + 1))
	verdict=ok
	if [ "$rc" = missing ]; then
		verdict="FAILED: not in this bundle"
	elif [ "$vmskip" -gt 0 ]; then
		verdict="FAILED: $vmskip VM tests could not run"
	elif [ "$rc" != 0 ] && [ "$fail" = 0 ]; then
		verdict="FAILED: exit $rc with no test failed (a panic, a timeout?)"
	elif [ "$rc" != 0 ]; then
		verdict=FAILED
	fi
	[ "$verdict" = ok ] || failed=1
	printf '    %-22s %7s %6s %6s %6s %8s  %s\n' "$base" "$rc" "$(count PASS "$f")" "$fail" \
		"$(($(count SKIP "$f") + vmskip))" "$notrun" "$verdict" >>"$RES/summary.txt"
done
{
	echo "    (tests and subtests, or benchmarks and sub-benchmarks; each one's log is RES/<binary>.<test|bench>.log)"
	if [ -n "$(list FAIL)" ]; then echo; echo "FAILED:"; list FAIL; fi
	if [ -n "$(list VMSKIP)" ]; then echo; echo "VM TESTS THAT COULD NOT RUN (failures):"; list VMSKIP; fi
	notrun=$(
		list NOTRUN | sed 's/: SKIPPING VM TEST: .*//'
		for s in "$RES"/*.run-sh-skipped; do
			[ -f "$s" ] && echo "    $(basename "$s" .run-sh-skipped): -test.skip '$(cat "$s")' (run.sh's DEBIAN_ONLY: debian-12 through pyro's cache)"
		done
	)
	if [ -n "$notrun" ]; then
		echo
		echo "NOT RUN: they need the debian-12 environment, which this bundle does not carry"
		echo "(PYRO_TEST_ENV_DEBIAN=CACHE/envs/debian-12 ./run.sh runs them where one is built):"
		echo "$notrun"
	fi
	if [ -n "$(list SKIP)" ]; then echo; echo "SKIPPED by the tests themselves:"; list SKIP; fi
	if [ -n "$bench" ]; then
		echo
		echo "BENCHMARKS (-test.benchtime $BENCHTIME; the medians each one logs are in its bench log):"
		for log in "$RES"/*.bench.log; do
			[ -f "$log" ] && grep -E '^Benchmark[^[:space:]]*[[:space:]]+[0-9]+[[:space:]]' "$log" | sed "s/^/    $(basename "$log" .bench.log): /"
		done
		[ -s "$RES/bench-unmatched.txt" ] && echo "    no benchmark in this build matches: $(tr '\n' ' ' <"$RES/bench-unmatched.txt")"
	fi
	echo
	if [ "$failed" = 0 ]; then echo "==> PASS: everything that ran passed"; else echo "==> FAIL: see above, and the logs in $RES"; fi
} >>"$RES/summary.txt"
tee -a "$RES/run.log" <"$RES/summary.txt"
exit "$failed"
