package main

import (
	"os"
	"path/filepath"
)

// The small projects the scenarios seed workspaces with, written to a
// host directory each run.

// writeTree writes files (relative path → content) under dir.
func writeTree(dir string, files map[string]string) error {
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if filepath.Ext(p) == ".sh" {
			mode = 0o755
		}
		if err := os.WriteFile(full, []byte(c), mode); err != nil {
			return err
		}
	}
	return nil
}

// The cart project (repro-fix and the demo): a discount given in percent
// is divided by 10, so the test of a discount fails; cartFix corrects it.
const (
	cartPy = `"""A shopping cart's arithmetic."""


def total(prices, discount=0):
    """Sum prices, less a discount given in percent."""
    subtotal = sum(prices)
    return subtotal - subtotal * discount / 10
`
	cartFixedPy = `"""A shopping cart's arithmetic."""


def total(prices, discount=0):
    """Sum prices, less a discount given in percent."""
    subtotal = sum(prices)
    return subtotal - subtotal * discount / 100
`
	cartFix = `--- a/cart.py
+++ b/cart.py
@@ -5,3 +5,3 @@ def total(prices, discount=0):
     """Sum prices, less a discount given in percent."""
     subtotal = sum(prices)
-    return subtotal - subtotal * discount / 10
+    return subtotal - subtotal * discount / 100
`
	cartTestPy = `import unittest

from cart import total


class TotalTest(unittest.TestCase):
    def test_no_discount(self):
        self.assertEqual(total([10, 20]), 30)

    def test_discount_percent(self):
        self.assertEqual(total([10, 20], discount=10), 27)


if __name__ == "__main__":
    unittest.main()
`
	// cartTest is the test command; no .pyc files, so the diff shows
	// only the fix.
	cartTest = "PYTHONDONTWRITEBYTECODE=1 python3 -m unittest -v test_cart"
)

func cartProject() map[string]string {
	return map[string]string{
		"cart.py":      cartPy,
		"test_cart.py": cartTestPy,
		"README.md":    "# cart\n\nTotals for a shopping cart. Run the tests with `python3 -m unittest`.\n",
	}
}

// The word-report project (cold-start) needs tinyfmt, shipped in the seed
// as a wheel under vendor/: with no package index to reach, pip installs
// it from there.
const (
	tinyfmtVersion = "1.0.0"
	tinyfmtInit    = `"""tinyfmt: small text helpers (a stand-in dependency for pyro's smoke pack)."""

__version__ = "1.0.0"


def title_case(text):
    return " ".join(w[:1].upper() + w[1:].lower() for w in text.split())


def table(rows):
    """Align rows of strings into columns, two spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
`
	wordReportPy = `"""Word counts as a small report."""
from collections import Counter

from tinyfmt import table, title_case


def counts(text):
    words = (w.strip(".,;:!?").lower() for w in text.split())
    return Counter(w for w in words if w)


def report(text, top=3):
    rows = [(title_case(w), str(n)) for w, n in counts(text).most_common(top)]
    return table(rows)
`
	wordReportTestPy = `import unittest

import tinyfmt
from wordreport import counts, report


class WordReportTest(unittest.TestCase):
    def test_counts(self):
        self.assertEqual(counts("a b, A!")["a"], 2)

    def test_report(self):
        self.assertEqual(report("pear apple pear fig pear apple", top=2), "Pear   3\nApple  2")

    def test_dependency_version(self):
        self.assertEqual(tinyfmt.__version__, "1.0.0")
`
)

func wordReportProject() (map[string]string, error) {
	whl, err := buildWheel("tinyfmt", tinyfmtVersion, map[string]string{"tinyfmt/__init__.py": tinyfmtInit})
	if err != nil {
		return nil, err
	}
	return map[string]string{
		"wordreport.py":            wordReportPy,
		"tests/test_wordreport.py": wordReportTestPy,
		"requirements.txt":         "tinyfmt==" + tinyfmtVersion + "\n",
		"vendor/" + wheelFileName("tinyfmt", tinyfmtVersion): string(whl),
		"README.md": "# wordreport\n\nInstall: `pip install --no-index --find-links vendor -r requirements.txt`.\n" +
			"Test: `python3 -m unittest discover -s tests`.\n",
	}, nil
}

// The evaluation project (review-eval): eval.py scores classify.parity on
// cases.json, one of whose five cases is labelled wrong, and writes
// reports/eval.json.
const (
	evalReport = "reports/eval.json"
	evalPy     = `"""Score classify.parity against cases.json; write reports/eval.json."""
import json
import os

from classify import parity

with open("cases.json") as f:
    cases = json.load(f)
failures = [c for c in cases if parity(c["input"]) != c["want"]]
report = {"total": len(cases), "passed": len(cases) - len(failures), "failures": failures}
os.makedirs("reports", exist_ok=True)
with open("reports/eval.json", "w") as f:
    json.dump(report, f, indent=2)
print(f"{report['passed']}/{report['total']} cases passed; report in reports/eval.json")
`
)

func evalProject() map[string]string {
	return map[string]string{
		"classify.py": "def parity(n):\n    return \"even\" if n % 2 == 0 else \"odd\"\n",
		"cases.json":  `[{"input": 2, "want": "even"}, {"input": 7, "want": "odd"}, {"input": 0, "want": "even"}, {"input": -3, "want": "odd"}, {"input": 10, "want": "odd"}]` + "\n",
		"eval.py":     evalPy,
	}
}

// The untrusted project (untrusted): probe.sh is the hostile code. Given
// a host directory, it tries to write outside /workspace (the guest's
// /etc, and that host directory's path), to read the host's files and the
// server's environment, and prints what it found.
const probeSh = `#!/bin/sh
# Untrusted code: tries to leave /workspace and reach the host.
host="$1"
echo pwned > /etc/pyro-smoke-escape && echo "wrote /etc/pyro-smoke-escape"
mkdir -p "$host" && echo pwned > "$host/host-only.txt" && echo "wrote $host/host-only.txt"
cat "$host/canary.txt" 2>&1
ls -la "$host" 2>&1
env
cat /proc/[0-9]*/environ 2>/dev/null | tr '\0' '\n' | grep -i secret
cat /proc/cmdline
exit 0
`

func untrustedProject() map[string]string {
	return map[string]string{
		"probe.sh":  probeSh,
		"README.md": "# probe\n\nCode nobody has read yet.\n",
	}
}

// The parallel project: one greeting each workspace changes its own way.
func greetingProject() map[string]string {
	return map[string]string{
		"app.py":    "GREETING = \"hello\"\n\n\ndef greet(name):\n    return f\"{GREETING}, {name}\"\n",
		"README.md": "# greet\n",
	}
}
