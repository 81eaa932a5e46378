package acpi

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// requireIasl returns the path of iasl (Debian package acpica-tools). Without
// it the test fails when CI=true and is skipped loudly otherwise.
func requireIasl(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("iasl")
	if err == nil {
		return path
	}
	const msg = "iasl not found: install acpica-tools (apt-get install -y acpica-tools); " +
		"the ACPI tables were NOT checked against the reference disassembler"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("!!! SKIPPING: " + msg)
	return ""
}

// iaslDisassemble writes table to dir/name.dat, runs `iasl -d` on it and
// returns the .dsl text. iasl diagnostics (bad checksums, unknown opcodes,
// warnings) fail the test.
func iaslDisassemble(t *testing.T, iasl, dir, name string, table []byte) string {
	t.Helper()
	dat := filepath.Join(dir, name+".dat")
	if err := os.WriteFile(dat, table, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(iasl, "-d", dat)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("iasl -d %s: %v\n%s", name, err, out)
	}
	dsl, err := os.ReadFile(filepath.Join(dir, name+".dsl"))
	if err != nil {
		t.Fatalf("iasl -d %s wrote no .dsl: %v\n%s", name, err, out)
	}
	for _, bad := range []string{"Incorrect checksum", "Error", "Warning", "Invalid", "terminates in the middle"} {
		if strings.Contains(string(out), bad) || strings.Contains(string(dsl), bad) {
			t.Errorf("iasl -d %s reports %q:\n%s\n%s", name, bad, out, dsl)
		}
	}
	return string(dsl)
}

var (
	lineComment  = regexp.MustCompile(`//[^\n]*`)
	blockComment = regexp.MustCompile(`(?s)/\*.*?\*/`)
	spaces       = regexp.MustCompile(`\s+`)
)

// normalizeASL drops comments, collapses white space and removes spaces
// before ')'.
func normalizeASL(s string) string {
	s = blockComment.ReplaceAllString(s, "")
	s = lineComment.ReplaceAllString(s, "")
	s = strings.TrimSpace(spaces.ReplaceAllString(s, " "))
	return strings.ReplaceAll(s, " )", ")")
}

func TestIaslDisassemblesDSDT(t *testing.T) {
	iasl := requireIasl(t)
	cfg := sampleConfig()
	g := buildAndParse(t, cfg, DefaultBase)
	dir := t.TempDir()
	dsl := iaslDisassemble(t, iasl, dir, "dsdt", g.dsdt)
	asl := normalizeASL(dsl)

	want := []string{
		`DefinitionBlock ("", "DSDT", 2, "PYRO ", "PYRODSDT", 0x00000001)`,
		`Name (\_S5, Package (0x02) { 0x05, Zero })`,
		`Scope (\_SB) { Device (COM1)`,
		`Device (COM1) { Name (_HID, EisaId ("PNP0501")) Name (_UID, Zero) Name (_CRS, ResourceTemplate () { ` +
			`IO (Decode16, 0x03F8, 0x03F8, 0x01, 0x08,) ` +
			`Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,,) { 0x00000004, } }) }`,
	}
	for i, d := range cfg.VirtioMMIO {
		uid := map[int]string{0: "Zero", 1: "One"}[i]
		if uid == "" {
			uid = fmt.Sprintf("0x%02X", i)
		}
		want = append(want, fmt.Sprintf(`Device (V%03d) { Name (_HID, "LNRO0005") Name (_UID, %s) `+
			`Name (_CRS, ResourceTemplate () { Memory32Fixed (ReadWrite, 0x%08X, 0x%08X,) `+
			`Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,,) { 0x%08X, } }) }`,
			i, uid, d.Base, d.Size, d.GSI))
	}
	gen := cfg.VMGenID
	want = append(want,
		fmt.Sprintf(`Device (VGEN) { Name (_HID, "PYRO0001") Name (_CID, "VM_Gen_Counter") Name (_DDN, "VM_Gen_Counter") `+
			`Method (ADDR, 0, NotSerialized) { Return (Package (0x02) { 0x%08X, Zero }) } }`, gen.Addr),
		fmt.Sprintf(`Device (GED0) { Name (_HID, "ACPI0013") Name (_UID, Zero) `+
			`Name (_CRS, ResourceTemplate () { Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,,) { 0x%08X, } }) `+
			`Method (_EVT, 1, NotSerialized) { If ((Arg0 == 0x%02X)) { Notify (\_SB.VGEN, 0x80) } } }`, gen.GSI, gen.GSI),
	)
	for _, w := range want {
		if !strings.Contains(asl, w) {
			t.Errorf("disassembled DSDT lacks\n  %s\nnormalized output:\n  %s", w, asl)
		}
	}

	// The disassembly must compile back without errors or warnings.
	cmd := exec.Command(iasl, "-p", filepath.Join(dir, "recompiled"), filepath.Join(dir, "dsdt.dsl"))
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "0 Errors, 0 Warnings") {
		t.Errorf("recompiling the disassembled DSDT: %v\n%s", err, out)
	}
}

func TestIaslDisassemblesFADTAndMADT(t *testing.T) {
	iasl := requireIasl(t)
	for _, n := range []int{1, 8} {
		g := buildAndParse(t, Config{NumCPUs: n}, DefaultBase)
		dir := t.TempDir()

		fadt := normalizeASL(iaslDisassemble(t, iasl, dir, "facp", g.fadt))
		for _, w := range []string{
			"Revision : 06",
			"Legacy Devices Supported (V2) : 0",
			"8042 Present on ports 60/64 (V2) : 0",
			"Reset Register Supported (V2) : 1",
			"Hardware Reduced (V5) : 1",
			"FADT Minor Revision : 05",
			"Value to cause reset : 01",
			"Sleep Control Register : [Generic Address Structure]",
			"Address : 0000000000000600",
		} {
			if !strings.Contains(fadt, w) {
				t.Errorf("disassembled FADT lacks %q:\n%s", w, fadt)
			}
		}

		madt := iaslDisassemble(t, iasl, dir, "apic", g.madt)
		if c := strings.Count(madt, "[Processor Local APIC]"); c != n {
			t.Errorf("iasl sees %d local APICs, want %d", c, n)
		}
		if c := strings.Count(madt, "[I/O APIC]"); c != 1 {
			t.Errorf("iasl sees %d I/O APICs, want 1", c)
		}

		xsdt := iaslDisassemble(t, iasl, dir, "xsdt", g.xsdt)
		if c := strings.Count(xsdt, "ACPI Table Address"); c != 2 {
			t.Errorf("iasl sees %d XSDT entries, want 2", c)
		}
	}
}

// TestIaslCatchesBadChecksum proves the iasl check is not vacuous.
func TestIaslCatchesBadChecksum(t *testing.T) {
	iasl := requireIasl(t)
	g := buildAndParse(t, Config{NumCPUs: 1}, DefaultBase)
	bad := append([]byte(nil), g.madt...)
	bad[len(bad)-1]++
	dir := t.TempDir()
	dat := filepath.Join(dir, "bad.dat")
	if err := os.WriteFile(dat, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(iasl, "-d", dat)
	cmd.Dir = dir
	out, _ := cmd.CombinedOutput()
	dsl, _ := os.ReadFile(filepath.Join(dir, "bad.dsl"))
	if !strings.Contains(string(out)+string(dsl), "Incorrect checksum") {
		t.Errorf("iasl did not flag a corrupted checksum:\n%s\n%s", out, dsl)
	}
}
