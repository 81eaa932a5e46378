package main

import (
	"os"
	"strings"
)

// Reruns in the nested-KVM harness. The harness's emulator (QEMU's TCG
// emulating AMD SVM for L1's KVM) kills or wedges an L2 guest now and
// then, whatever the guest runs; vmtest reruns Go tests that fail that
// way (cmd/vmtest/retry.go), and the smoke pack follows the same policy:
// inside the harness only (PYRO_VMTEST_L1=1; PYRO_VMTEST_RETRY=0 turns it
// off), a scenario whose failure or pyro log shows a guest that died or
// went silent runs again, at most maxReruns times, and mcpdrive says so on
// stderr. With hardware KVM a dead guest is pyro's to explain: no rerun.

// guestDeathSigns are phrases of pyro's diagnostics for a guest that died
// or stopped answering (the list vmtest's retry.go keeps, as far as a
// workspace can show them).
var guestDeathSigns = []string{
	"did not answer within the start timeout",
	"triple fault",
	"Kernel panic",
	"stopped answering",
}

// maxReruns bounds the reruns of one scenario.
const maxReruns = 2

// rerunsAllowed reports whether this run may rerun scenarios: inside the
// harness, unless turned off.
func rerunsAllowed() bool {
	return os.Getenv("PYRO_VMTEST_L1") == "1" && os.Getenv("PYRO_VMTEST_RETRY") != "0"
}

// deathSign returns the first guest-death phrase in texts, or "".
func deathSign(texts ...string) string {
	for _, t := range texts {
		for _, s := range guestDeathSigns {
			if strings.Contains(t, s) {
				return s
			}
		}
	}
	return ""
}
