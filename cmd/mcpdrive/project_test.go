package main

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// applyHunks applies a unified diff of one file to old, strictly (no fuzz,
// as patch_apply does), for checking the scenarios' patches here.
func applyHunks(t *testing.T, old, patch string) string {
	t.Helper()
	hunk := regexp.MustCompile(`^@@ -(\d+),(\d+) \+(\d+),(\d+) @@`)
	src := strings.SplitAfter(old, "\n")
	var out []string
	next := 0 // index in src of the first line not yet copied
	lines := strings.SplitAfter(patch, "\n")
	for i := 0; i < len(lines); i++ {
		m := hunk.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		start, _ := strconv.Atoi(m[1])
		out = append(out, src[next:start-1]...)
		next = start - 1
		for i+1 < len(lines) && lines[i+1] != "" && strings.ContainsRune(" -+", rune(lines[i+1][0])) {
			i++
			l := lines[i]
			switch l[0] {
			case ' ', '-':
				if next >= len(src) || src[next] != l[1:] {
					t.Fatalf("hunk line %q does not match line %d of the file", l, next+1)
				}
				next++
				if l[0] == ' ' {
					out = append(out, l[1:])
				}
			case '+':
				out = append(out, l[1:])
			}
		}
	}
	out = append(out, src[next:]...)
	return strings.Join(out, "")
}

func TestCartFixApplies(t *testing.T) {
	if got := applyHunks(t, cartPy, cartFix); got != cartFixedPy {
		t.Errorf("cartFix applied to cart.py gives\n%s\nwant\n%s", got, cartFixedPy)
	}
}

// python3 returns the host's python3, or skips: the projects' own checks
// need one, the VM scenarios do not.
func python3(t *testing.T) string {
	p, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 on this host")
	}
	return p
}

func runIn(t *testing.T, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"PYTHONDONTWRITEBYTECODE=1"}, env...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The cart project fails its test as shipped and passes it with the fix.
func TestCartProject(t *testing.T) {
	py := python3(t)
	dir := t.TempDir()
	if err := writeTree(dir, cartProject()); err != nil {
		t.Fatal(err)
	}
	args := strings.Fields(cartTest)[2:] // after "PYTHONDONTWRITEBYTECODE=1 python3"
	if out, err := runIn(t, dir, nil, py, args...); err == nil || !strings.Contains(out, "AssertionError") {
		t.Fatalf("the buggy cart passes its test (%v):\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "cart.py"), []byte(cartFixedPy), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runIn(t, dir, nil, py, args...); err != nil {
		t.Fatalf("the fixed cart fails its test (%v):\n%s", err, out)
	}
}

// The word-report project needs its dependency, which pip installs from the
// seed's wheel without an index; then its three tests pass.
func TestWordReportProject(t *testing.T) {
	py := python3(t)
	if out, err := exec.Command(py, "-m", "pip", "--version").CombinedOutput(); err != nil {
		t.Skipf("no pip for python3: %s", out)
	}
	dir := t.TempDir()
	files, err := wordReportProject()
	if err != nil {
		t.Fatal(err)
	}
	if err := writeTree(dir, files); err != nil {
		t.Fatal(err)
	}
	if out, err := runIn(t, dir, nil, py, "-c", "import tinyfmt"); err == nil {
		t.Fatalf("tinyfmt imports before the install:\n%s", out)
	}
	deps := filepath.Join(t.TempDir(), "deps")
	if out, err := runIn(t, dir, nil, py, "-m", "pip", "install", "--no-index", "--find-links", "vendor", "--target", deps,
		"--disable-pip-version-check", "--no-cache-dir", "-q", "-r", "requirements.txt"); err != nil {
		t.Fatalf("pip install from the seed: %v\n%s", err, out)
	}
	out, err := runIn(t, dir, []string{"PYTHONPATH=" + deps}, py, "-m", "unittest", "discover", "-s", "tests", "-v")
	if err != nil || !strings.Contains(out, "Ran 3 tests") || !strings.HasSuffix(strings.TrimSpace(out), "OK") {
		t.Fatalf("the tests (%v):\n%s", err, out)
	}
}

// eval.py writes the report review-eval expects: 4 of 5 passed.
func TestEvalProject(t *testing.T) {
	py := python3(t)
	dir := t.TempDir()
	if err := writeTree(dir, evalProject()); err != nil {
		t.Fatal(err)
	}
	if out, err := runIn(t, dir, nil, py, "eval.py"); err != nil {
		t.Fatalf("eval.py: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(dir, evalReport))
	if err != nil {
		t.Fatal(err)
	}
	var r struct{ Total, Passed int }
	if err := json.Unmarshal(raw, &r); err != nil || r.Total != 5 || r.Passed != 4 {
		t.Errorf("report %s (%v), want 4 of 5", raw, err)
	}
}

// The wheel is a zip whose RECORD lists every other file with its sha256
// and size, as pip checks.
func TestBuildWheel(t *testing.T) {
	whl, err := buildWheel("tinyfmt", "1.0.0", map[string]string{"tinyfmt/__init__.py": tinyfmtInit})
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(whl), int64(len(whl)))
	if err != nil {
		t.Fatal(err)
	}
	contents := map[string]string{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		contents[f.Name] = string(b)
	}
	record, ok := contents["tinyfmt-1.0.0.dist-info/RECORD"]
	if !ok {
		t.Fatalf("no RECORD in %v", contents)
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(record), "\n") {
		parts := strings.Split(line, ",")
		if len(parts) != 3 {
			t.Fatalf("RECORD line %q", line)
		}
		listed[parts[0]] = true
		if parts[0] == "tinyfmt-1.0.0.dist-info/RECORD" {
			if parts[1] != "" || parts[2] != "" {
				t.Errorf("RECORD lists itself with a hash: %q", line)
			}
			continue
		}
		c := contents[parts[0]]
		sum := sha256.Sum256([]byte(c))
		want := fmt.Sprintf("sha256=%s", base64.RawURLEncoding.EncodeToString(sum[:]))
		if parts[1] != want || parts[2] != strconv.Itoa(len(c)) {
			t.Errorf("RECORD %q, want %s,%d", line, want, len(c))
		}
	}
	for name := range contents {
		if !listed[name] {
			t.Errorf("%s is not in RECORD", name)
		}
	}
	for _, name := range []string{"tinyfmt/__init__.py", "tinyfmt-1.0.0.dist-info/METADATA", "tinyfmt-1.0.0.dist-info/WHEEL"} {
		if contents[name] == "" {
			t.Errorf("the wheel lacks %s", name)
		}
	}
	if got := wheelFileName("tinyfmt", "1.0.0"); got != "tinyfmt-1.0.0-py3-none-any.whl" {
		t.Errorf("wheel file name %q", got)
	}
}
