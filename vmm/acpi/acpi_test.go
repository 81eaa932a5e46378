package acpi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// The tests read tables with literal spec offsets rather than the package's
// constants, so a wrong constant cannot hide itself.

var le = binary.LittleEndian

func sum8(b []byte) byte {
	var s byte
	for _, v := range b {
		s += v
	}
	return s
}

// sampleConfig is a typical microVM: 2 vCPUs, three virtio-mmio devices,
// COM1 and a VM generation ID.
func sampleConfig() Config {
	return Config{
		NumCPUs: 2,
		COM1:    true,
		VirtioMMIO: []VirtioMMIODevice{
			{Base: 0xD0000000, Size: 0x1000, GSI: 5},
			{Base: 0xD0001000, Size: 0x1000, GSI: 6},
			{Base: 0xD0002000, Size: 0x200, GSI: 23},
		},
		VMGenID: &VMGenIDConfig{Addr: 0xEFFF0, GSI: 3},
	}
}

// guestImage is an image as the guest sees it: tables found by walking from
// the RSDP, each one checked for a zero checksum and a consistent length.
type guestImage struct {
	img   []byte
	base  uint64
	rsdp  []byte
	xsdt  []byte
	byAdr map[uint64][]byte
	sigs  []string // XSDT entry signatures, in order
	fadt  []byte
	madt  []byte
	dsdt  []byte
	extra map[string][]byte
}

func buildAndParse(t *testing.T, cfg Config, base uint64) *guestImage {
	t.Helper()
	img, rsdp, err := Build(cfg, base)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return parseGuestImage(t, img, base, rsdp)
}

func parseGuestImage(t *testing.T, img []byte, base, rsdpAddr uint64) *guestImage {
	t.Helper()
	g := &guestImage{img: img, base: base, byAdr: map[uint64][]byte{}, extra: map[string][]byte{}}
	type span struct {
		name       string
		start, end uint64
	}
	var spans []span
	at := func(name string, addr uint64, n uint64) []byte {
		t.Helper()
		if addr < base || addr+n > base+uint64(len(img)) {
			t.Fatalf("%s at %#x+%d lies outside the image [%#x, %#x)", name, addr, n, base, base+uint64(len(img)))
		}
		spans = append(spans, span{name, addr, addr + n})
		return img[addr-base : addr-base+n]
	}
	table := func(addr uint64) []byte {
		t.Helper()
		if addr < base || addr+36 > base+uint64(len(img)) {
			t.Fatalf("table header at %#x lies outside the image", addr)
		}
		hdr := img[addr-base:]
		n := le.Uint32(hdr[4:8])
		if n < 36 {
			t.Fatalf("table %q at %#x: length %d < 36", hdr[0:4], addr, n)
		}
		tb := at(string(hdr[0:4]), addr, uint64(n))
		if s := sum8(tb); s != 0 {
			t.Errorf("table %q: bytes sum to %#x, want 0", tb[0:4], s)
		}
		if string(tb[10:16]) != "PYRO  " && string(tb[0:4]) != "OEMX" {
			t.Errorf("table %q: OEMID %q, want %q", tb[0:4], tb[10:16], "PYRO  ")
		}
		g.byAdr[addr] = tb
		return tb
	}

	// RSDP (§5.2.5.3).
	if rsdpAddr%16 != 0 {
		t.Errorf("RSDP at %#x is not 16-byte aligned", rsdpAddr)
	}
	r := at("RSDP", rsdpAddr, 36)
	g.rsdp = r
	if string(r[0:8]) != "RSD PTR " {
		t.Fatalf("RSDP signature %q", r[0:8])
	}
	if s := sum8(r[0:20]); s != 0 {
		t.Errorf("RSDP checksum (20 bytes) sums to %#x", s)
	}
	if s := sum8(r[0:36]); s != 0 {
		t.Errorf("RSDP extended checksum (36 bytes) sums to %#x", s)
	}
	if r[15] != 2 {
		t.Errorf("RSDP revision %d, want 2", r[15])
	}
	if n := le.Uint32(r[20:24]); n != 36 {
		t.Errorf("RSDP length %d, want 36", n)
	}

	// XSDT (§5.2.8).
	g.xsdt = table(le.Uint64(r[24:32]))
	if string(g.xsdt[0:4]) != "XSDT" {
		t.Fatalf("RSDP XsdtAddress points at %q", g.xsdt[0:4])
	}
	if (len(g.xsdt)-36)%8 != 0 {
		t.Fatalf("XSDT length %d leaves a partial entry", len(g.xsdt))
	}
	for off := 36; off < len(g.xsdt); off += 8 {
		tb := table(le.Uint64(g.xsdt[off:]))
		sig := string(tb[0:4])
		g.sigs = append(g.sigs, sig)
		switch sig {
		case "FACP":
			g.fadt = tb
		case "APIC":
			g.madt = tb
		default:
			g.extra[sig] = tb
		}
	}
	if g.fadt == nil || g.madt == nil {
		t.Fatalf("XSDT entries %v lack FACP or APIC", g.sigs)
	}
	if len(g.sigs) < 2 || g.sigs[0] != "FACP" || g.sigs[1] != "APIC" {
		t.Errorf("XSDT entries %v, want FACP, APIC first", g.sigs)
	}

	// DSDT via the FADT's X_DSDT (§5.2.9, offset 140).
	g.dsdt = table(le.Uint64(g.fadt[140:148]))
	if string(g.dsdt[0:4]) != "DSDT" {
		t.Fatalf("FADT X_DSDT points at %q", g.dsdt[0:4])
	}

	// No two structures may overlap.
	for i, a := range spans {
		for _, b := range spans[i+1:] {
			if a.start < b.end && b.start < a.end && a.start != b.start {
				t.Errorf("%s [%#x,%#x) overlaps %s [%#x,%#x)", a.name, a.start, a.end, b.name, b.start, b.end)
			}
		}
	}
	return g
}

func TestBuildWalkFromRSDP(t *testing.T) {
	for _, cfg := range []Config{{NumCPUs: 1}, sampleConfig()} {
		g := buildAndParse(t, cfg, DefaultBase)
		if got := fmt.Sprint(g.sigs); got != "[FACP APIC]" {
			t.Errorf("XSDT entries %s, want [FACP APIC]", got)
		}
		if g.xsdt[8] != 1 {
			t.Errorf("XSDT revision %d, want 1", g.xsdt[8])
		}
		if g.dsdt[8] < 2 {
			t.Errorf("DSDT revision %d, want >= 2 (64-bit integers)", g.dsdt[8])
		}
	}
}

// TestRSDPFoundByBIOSAreaScan does what Linux's acpi_find_root_pointer does
// when boot_params.acpi_rsdp_addr is 0: scan 0xE0000-0xFFFFF on 16-byte
// boundaries for a valid RSDP.
func TestRSDPFoundByBIOSAreaScan(t *testing.T) {
	img, rsdp, err := Build(sampleConfig(), DefaultBase)
	if err != nil {
		t.Fatal(err)
	}
	mem := make([]byte, 1<<20)
	copy(mem[DefaultBase:], img)
	found := uint64(0)
	for a := 0xE0000; a < 0x100000; a += 16 {
		c := mem[a:]
		if string(c[0:8]) == "RSD PTR " && sum8(c[0:20]) == 0 && (c[15] < 2 || sum8(c[0:36]) == 0) {
			found = uint64(a)
			break
		}
	}
	if found != rsdp || found != DefaultBase {
		t.Fatalf("scan found RSDP at %#x, Build returned %#x", found, rsdp)
	}
}

func TestFADTFields(t *testing.T) {
	cfg := sampleConfig()
	g := buildAndParse(t, cfg, DefaultBase)
	f := g.fadt
	if len(f) != 276 || le.Uint32(f[4:8]) != 276 {
		t.Fatalf("FADT length %d (header %d), want 276", len(f), le.Uint32(f[4:8]))
	}
	if f[8] != 6 {
		t.Errorf("FADT revision %d, want 6", f[8])
	}
	if f[131] != 5 {
		t.Errorf("FADT minor version %d, want 5", f[131])
	}
	flags := le.Uint32(f[112:116])
	for _, bit := range []uint{20, 10, 4, 5} { // HW_REDUCED_ACPI, RESET_REG_SUP, PWR_BUTTON, SLP_BUTTON
		if flags&(1<<bit) == 0 {
			t.Errorf("FADT flags %#x: bit %d clear", flags, bit)
		}
	}
	if flags&^(1<<20|1<<10|1<<4|1<<5) != 0 {
		t.Errorf("FADT flags %#x: unexpected bits", flags)
	}
	boot := le.Uint16(f[109:111])
	if boot&(1<<0|1<<1) != 0 {
		t.Errorf("IAPC_BOOT_ARCH %#x claims legacy devices or an 8042", boot)
	}
	if boot&(1<<2|1<<3|1<<5) != 1<<2|1<<3|1<<5 {
		t.Errorf("IAPC_BOOT_ARCH %#x: want VGA not present, MSI not supported, no CMOS RTC", boot)
	}
	// No SCI, SMI command port, FACS or fixed PM blocks in hardware-reduced mode.
	for _, r := range [][2]int{{36, 40}, {46, 48}, {48, 52}, {56, 92}, {132, 140}, {148, 244}} {
		if !bytes.Equal(f[r[0]:r[1]], make([]byte, r[1]-r[0])) {
			t.Errorf("FADT bytes [%d,%d) = % x, want zero", r[0], r[1], f[r[0]:r[1]])
		}
	}
	dsdt := le.Uint64(f[140:148])
	if d32 := le.Uint32(f[40:44]); uint64(d32) != dsdt {
		t.Errorf("FADT DSDT %#x != X_DSDT %#x", d32, dsdt)
	}
	wantGAS := []byte{1, 8, 0, 1, 0x00, 0x06, 0, 0, 0, 0, 0, 0} // SystemIO, 8 bits, byte access, port 0x600
	for _, off := range []int{116, 244, 256} {
		if !bytes.Equal(f[off:off+12], wantGAS) {
			t.Errorf("FADT GAS at %d = % x, want % x", off, f[off:off+12], wantGAS)
		}
	}
	if f[128] != DefaultResetValue {
		t.Errorf("RESET_VALUE %#x, want %#x", f[128], DefaultResetValue)
	}
	if string(f[268:276]) != "PYROVMM\x00" {
		t.Errorf("hypervisor vendor identity %q", f[268:276])
	}
}

func TestFADTCustomPowerPort(t *testing.T) {
	cfg := Config{NumCPUs: 1, PowerPort: 0xB004, ResetValue: 0x0F, CMOSRTC: true}
	f := buildAndParse(t, cfg, DefaultBase).fadt
	for _, off := range []int{116, 244, 256} {
		if p := le.Uint64(f[off+4:]); p != 0xB004 {
			t.Errorf("GAS at %d: address %#x, want 0xB004", off, p)
		}
	}
	if f[128] != 0x0F {
		t.Errorf("RESET_VALUE %#x, want 0x0F", f[128])
	}
	if boot := le.Uint16(f[109:111]); boot&(1<<5) != 0 {
		t.Errorf("IAPC_BOOT_ARCH %#x says no CMOS RTC although CMOSRTC is set", boot)
	}
}

func TestMADT(t *testing.T) {
	for _, n := range []int{1, 2, 8, MaxCPUs} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			m := buildAndParse(t, Config{NumCPUs: n, IOAPICID: 3}, DefaultBase).madt
			if addr := le.Uint32(m[36:40]); addr != 0xFEE00000 {
				t.Errorf("local APIC address %#x", addr)
			}
			if fl := le.Uint32(m[40:44]); fl != 1 {
				t.Errorf("MADT flags %#x, want PCAT_COMPAT only", fl)
			}
			var lapics, ioapics int
			off := 44
			for off < len(m) {
				typ, l := m[off], int(m[off+1])
				if l < 2 || off+l > len(m) {
					t.Fatalf("entry at %d: bad length %d", off, l)
				}
				e := m[off : off+l]
				switch typ {
				case 0: // Processor Local APIC
					if l != 8 {
						t.Fatalf("local APIC entry length %d", l)
					}
					if int(e[2]) != lapics || int(e[3]) != lapics || le.Uint32(e[4:8]) != 1 {
						t.Errorf("local APIC entry %d = % x, want UID=APIC ID=%d, enabled", lapics, e, lapics)
					}
					lapics++
				case 1: // I/O APIC
					if l != 12 {
						t.Fatalf("I/O APIC entry length %d", l)
					}
					if e[2] != 3 || le.Uint32(e[4:8]) != 0xFEC00000 || le.Uint32(e[8:12]) != 0 {
						t.Errorf("I/O APIC entry % x", e)
					}
					ioapics++
				default:
					t.Errorf("unexpected MADT entry type %d", typ)
				}
				off += l
			}
			if off != len(m) {
				t.Errorf("entries end at %d, table length %d", off, len(m))
			}
			if lapics != n || ioapics != 1 {
				t.Errorf("%d local APICs, %d I/O APICs; want %d and 1", lapics, ioapics, n)
			}
		})
	}
}

func TestCustomInterruptControllerAddresses(t *testing.T) {
	m := buildAndParse(t, Config{NumCPUs: 1, LAPICAddr: 0xFEE10000, IOAPICAddr: 0xFEC10000}, DefaultBase).madt
	if a := le.Uint32(m[36:40]); a != 0xFEE10000 {
		t.Errorf("local APIC address %#x", a)
	}
	if a := le.Uint32(m[44+8+4:]); a != 0xFEC10000 {
		t.Errorf("I/O APIC address %#x", a)
	}
}

func TestPlacement(t *testing.T) {
	img, _, err := Build(sampleConfig(), DefaultBase)
	if err != nil {
		t.Fatal(err)
	}
	// The highest 16-byte aligned base that still ends by 1 MiB works ...
	last := uint64(BIOSAreaEnd-len(img)) &^ 15
	if _, _, err := Build(sampleConfig(), last); err != nil {
		t.Errorf("base %#x (end %#x): %v", last, last+uint64(len(img)), err)
	}
	// ... the next one does not.
	_, _, err = Build(sampleConfig(), last+16)
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "BIOS area") {
		t.Errorf("base %#x: err = %v, want a BIOS-area error", last+16, err)
	}
	// Above 1 MiB any size is fine; the 32-bit DSDT field is filled below 4 GiB only.
	g := buildAndParse(t, sampleConfig(), 0x7FF00000)
	if d := le.Uint32(g.fadt[40:44]); uint64(d) != le.Uint64(g.fadt[140:148]) {
		t.Errorf("DSDT %#x != X_DSDT below 4 GiB", d)
	}
	g = buildAndParse(t, sampleConfig(), 0x1_0000_0000)
	if d := le.Uint32(g.fadt[40:44]); d != 0 {
		t.Errorf("DSDT %#x, want 0 above 4 GiB", d)
	}
}

func TestExtraTables(t *testing.T) {
	body := []byte("pyro extra table body")
	extra := make([]byte, 36+len(body))
	copy(extra, "OEMX")
	le.PutUint32(extra[4:8], uint32(len(extra)))
	copy(extra[36:], body)
	orig := append([]byte(nil), extra...)

	cfg := sampleConfig()
	cfg.ExtraTables = [][]byte{extra}
	g := buildAndParse(t, cfg, DefaultBase)
	if got := fmt.Sprint(g.sigs); got != "[FACP APIC OEMX]" {
		t.Fatalf("XSDT entries %s", got)
	}
	if !bytes.Equal(g.extra["OEMX"][36:], body) {
		t.Errorf("extra table body changed")
	}
	if !bytes.Equal(extra, orig) {
		t.Errorf("Build modified the caller's table")
	}
}

func TestValidation(t *testing.T) {
	dev := func(base, size uint64, gsi uint32) []VirtioMMIODevice {
		return []VirtioMMIODevice{{Base: base, Size: size, GSI: gsi}}
	}
	short := make([]byte, 20)
	badLen := make([]byte, 40)
	le.PutUint32(badLen[4:8], 44)
	dsdt := make([]byte, 36)
	copy(dsdt, "DSDT")
	le.PutUint32(dsdt[4:8], 36)

	cases := []struct {
		name string
		cfg  Config
		base uint64
		want string
	}{
		{"zero cpus", Config{}, DefaultBase, "NumCPUs"},
		{"negative cpus", Config{NumCPUs: -1}, DefaultBase, "NumCPUs"},
		{"255 cpus", Config{NumCPUs: 255}, DefaultBase, "NumCPUs"},
		{"ioapic id", Config{NumCPUs: 1, IOAPICID: 16}, DefaultBase, "IOAPICID"},
		{"reset value = poweroff", Config{NumCPUs: 1, ResetValue: PoweroffValue}, DefaultBase, "ResetValue"},
		{"reset value = wake status", Config{NumCPUs: 1, ResetValue: WakeStatus}, DefaultBase, "ResetValue"},
		{"unaligned base", Config{NumCPUs: 1}, DefaultBase + 8, "aligned"},
		{"past 1 MiB", Config{NumCPUs: 1}, 0xFFF00, "BIOS area"},
		{"address space overflow", Config{NumCPUs: 1}, 1<<64 - 16, "overflows"},
		{"size 0", Config{NumCPUs: 1, VirtioMMIO: dev(0xD0000000, 0, 5)}, DefaultBase, "size 0"},
		{"base above 4G", Config{NumCPUs: 1, VirtioMMIO: dev(1<<32, 0x1000, 5)}, DefaultBase, "4 GiB"},
		{"crosses 4G", Config{NumCPUs: 1, VirtioMMIO: dev(0xFFFFF000, 0x2000, 5)}, DefaultBase, "4 GiB"},
		{"gsi 24", Config{NumCPUs: 1, VirtioMMIO: dev(0xD0000000, 0x1000, 24)}, DefaultBase, "GSI 24"},
		{"gsi 4 with COM1", Config{NumCPUs: 1, COM1: true, VirtioMMIO: dev(0xD0000000, 0x1000, 4)}, DefaultBase, "COM1"},
		{"duplicate gsi", Config{NumCPUs: 1, VirtioMMIO: []VirtioMMIODevice{{0xD0000000, 0x1000, 5}, {0xD0001000, 0x1000, 5}}}, DefaultBase, "already used"},
		{"overlap", Config{NumCPUs: 1, VirtioMMIO: []VirtioMMIODevice{{0xD0000000, 0x1000, 5}, {0xD0000800, 0x1000, 6}}}, DefaultBase, "overlaps"},
		{"short extra table", Config{NumCPUs: 1, ExtraTables: [][]byte{short}}, DefaultBase, "shorter"},
		{"extra table length", Config{NumCPUs: 1, ExtraTables: [][]byte{badLen}}, DefaultBase, "header length"},
		{"extra table signature", Config{NumCPUs: 1, ExtraTables: [][]byte{dsdt}}, DefaultBase, "generates itself"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, _, err := Build(c.cfg, c.base)
			if err == nil {
				t.Fatalf("Build succeeded (%d bytes), want error containing %q", len(img), c.want)
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want ErrInvalidConfig mentioning %q", err, c.want)
			}
		})
	}
	// The limits themselves are accepted.
	ok := Config{NumCPUs: MaxCPUs, IOAPICID: 15, VirtioMMIO: dev(0xFFFFF000, 0x1000, IOAPICPins-1)}
	if _, _, err := Build(ok, DefaultBase); err != nil {
		t.Errorf("boundary config rejected: %v", err)
	}
}

func TestVMGenIDValidation(t *testing.T) {
	img, _, err := Build(sampleConfig(), DefaultBase)
	if err != nil {
		t.Fatal(err)
	}
	end := DefaultBase + uint64(len(img))
	genID := func(addr uint64, gsi uint32) Config {
		c := sampleConfig() // COM1 on GSI 4, virtio on 5, 6 and 23
		c.VMGenID = &VMGenIDConfig{Addr: addr, GSI: gsi}
		return c
	}
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"zero address", genID(0, 3), "non-zero multiple of 8"},
		{"unaligned", genID(0xEFFF4, 3), "non-zero multiple of 8"},
		{"wraps", genID(1<<64-8, 3), "overflows"},
		{"gsi 24", genID(0xEFFF0, 24), "GSI 24"},
		{"COM1's gsi", genID(0xEFFF0, 4), "already used by COM1"},
		{"a virtio gsi", genID(0xEFFF0, 23), "already used by virtio-mmio device 2"},
		{"inside the tables", genID(DefaultBase+64, 3), "overlaps"},
		{"last bytes of the tables", genID((end-8)&^7, 3), "overlaps"},
		{"straddles the start", genID(DefaultBase-8, 3), "overlaps"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := Build(c.cfg, DefaultBase)
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want ErrInvalidConfig mentioning %q", err, c.want)
			}
		})
	}
	// Right before and right after the image, the top GSI without a
	// virtio device there, and GSI 4 when there is no COM1 are all fine.
	for _, cfg := range []Config{
		genID(DefaultBase-16, 3),
		genID((end+7)&^7, 3),
		genID(1<<64-24, 3),
		{NumCPUs: 1, VMGenID: &VMGenIDConfig{Addr: 0xEFFF0, GSI: IOAPICPins - 1}},
		{NumCPUs: 1, VMGenID: &VMGenIDConfig{Addr: 0xEFFF0, GSI: 4}},
	} {
		if _, _, err := Build(cfg, DefaultBase); err != nil {
			t.Errorf("VM generation ID %+v rejected: %v", *cfg.VMGenID, err)
		}
	}
}

func TestDecodePowerWrite(t *testing.T) {
	if PoweroffValue != 0x34 {
		t.Fatalf("PoweroffValue = %#x, want 0x34", PoweroffValue)
	}
	def := Config{}
	custom := Config{ResetValue: 0x0E}
	cases := []struct {
		cfg  Config
		v    uint8
		want PowerAction
	}{
		{def, 0x34, PowerOff},
		{def, WakeStatus, PowerNone}, // Linux clears WAK_STS first
		{def, 0x01, PowerReset},
		{def, 0x00, PowerNone},
		{def, 3<<2 | SleepEnable, PowerNone}, // S3 is not advertised
		{def, 5 << 2, PowerNone},             // SLP_TYP without SLP_EN
		{custom, 0x0E, PowerReset},
		{custom, 0x01, PowerNone},
	}
	for _, c := range cases {
		if got := c.cfg.DecodePowerWrite(c.v); got != c.want {
			t.Errorf("ResetValue %#x: DecodePowerWrite(%#x) = %v, want %v", c.cfg.ResetValue, c.v, got, c.want)
		}
	}
}

func TestBuildDeterministic(t *testing.T) {
	a, _, err := Build(sampleConfig(), DefaultBase)
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := Build(sampleConfig(), DefaultBase)
	if !bytes.Equal(a, b) {
		t.Error("two builds of the same config differ")
	}
}
