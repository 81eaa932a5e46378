package contract

import (
	"regexp"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits the tool layer enforces before calling the Backend.
const (
	MaxNameLen         = 64   // workspace and snapshot names
	MaxLabels          = 16   // labels per workspace
	MaxLabelKeyLen     = 63   // label key
	MaxLabelValueLen   = 256  // label value
	MaxRefLen          = 128  // workspace ID or name as a reference
	MaxPathLen         = 4096 // guest or host path
	MaxCommandLen      = 64 << 10
	MaxArgs            = 1024 // argv entries
	MaxEnvVars         = 64   // env_vars entries
	MaxEnvValueLen     = 32 << 10
	MaxStdinBytes      = 1 << 20
	MaxWriteBytes      = 1 << 20 // file_write content
	MaxPatchBytes      = 1 << 20 // patch_apply patch
	MaxReadBytes       = 1 << 20 // file_read max_bytes upper bound (results are still fitted to the budget)
	MinTimeoutSeconds  = 1
	MaxTimeoutSeconds  = 3600
	MinTTLSeconds      = 60
	MaxTTLSeconds      = 7 * 24 * 3600
	MaxVCPUs           = 32
	MinMemMiB          = 128
	MaxMemMiB          = 256 << 10
	MaxListLimit       = 1000 // file_list limit
	MaxLogsLimit       = 500  // workspace_logs limit
	DefaultTimeout     = 30   // exec timeout, seconds
	DefaultTTL         = 600  // workspace idle lifetime, seconds
	DefaultListLimit   = 200
	DefaultLogsLimit   = 50
	DefaultWorkdir     = "/workspace"
	DefaultReadBytes   = 64 << 10 // asked of the backend; the result is fitted to the budget
	defaultEnvVarRegex = `^[A-Za-z_][A-Za-z0-9_]*$`
)

// MaxListOffset bounds file_list's cursor: the guest lists a directory
// from its start for every page, so the cursor decides how many entries
// one call makes the guest send and the host hold.
const MaxListOffset = 100000

var (
	nameRe     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	labelKeyRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$`)
	envVarRe   = regexp.MustCompile(defaultEnvVarRegex)
)

// ValidateName checks a workspace or snapshot name: 1-64 characters from
// [A-Za-z0-9._-], starting with a letter or digit.
func ValidateName(field, name string) error {
	if name == "" {
		return Invalid("%s must not be empty", field)
	}
	if len(name) > MaxNameLen {
		return Invalid("%s is %d characters; the limit is %d", field, len(name), MaxNameLen)
	}
	if !nameRe.MatchString(name) {
		return Invalid("%s %q may only use letters, digits, '.', '_' and '-', and must start with a letter or digit", field, name)
	}
	return nil
}

// ValidateLabels checks labels: at most 16; keys 1-63 characters from
// [A-Za-z0-9._/-] starting and ending with a letter or digit; values at most
// 256 characters of Printable UTF-8.
func ValidateLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return Invalid("%d labels given; the limit is %d", len(labels), MaxLabels)
	}
	for _, k := range sortedKeys(labels) {
		if err := ValidateLabelKey(k); err != nil {
			return err
		}
		v := labels[k]
		if len(v) > MaxLabelValueLen {
			return Invalid("label %q value is %d bytes; the limit is %d", k, len(v), MaxLabelValueLen)
		}
		if !Printable(v) {
			return Invalid("label %q value must be Printable UTF-8 without control characters", k)
		}
	}
	return nil
}

// ValidateLabelKey checks one label key.
func ValidateLabelKey(k string) error {
	if k == "" || len(k) > MaxLabelKeyLen || !labelKeyRe.MatchString(k) {
		return Invalid("label key %q must be 1-%d characters from letters, digits, '.', '_', '/', '-', starting and ending with a letter or digit", k, MaxLabelKeyLen)
	}
	return nil
}

func ValidateRef(ref string) error {
	if strings.TrimSpace(ref) == "" {
		return Invalid("id must not be empty: pass the workspace id (or name) from {{create}} or {{list}}")
	}
	if len(ref) > MaxRefLen || !Printable(ref) {
		return Invalid("id %.40q is not a workspace id or name", ref)
	}
	return nil
}

func ValidatePath(field, p string, required bool) error {
	if p == "" {
		if required {
			return Invalid("%s must not be empty", field)
		}
		return nil
	}
	if len(p) > MaxPathLen {
		return Invalid("%s is %d bytes; the limit is %d", field, len(p), MaxPathLen)
	}
	if strings.IndexByte(p, 0) >= 0 || !utf8.ValidString(p) {
		return Invalid("%s must be valid UTF-8 without NUL bytes", field)
	}
	return nil
}

// ValidateTimeout returns the effective exec timeout: def for 0, else t if it
// lies in 1..3600.
func ValidateTimeout(t, def int) (int, error) {
	if t == 0 {
		return def, nil
	}
	if t < MinTimeoutSeconds || t > MaxTimeoutSeconds {
		return 0, Invalid("timeout_seconds must be between %d and %d (got %d); for longer jobs start them in the background (nohup CMD > /tmp/job.log 2>&1 &) and poll the log",
			MinTimeoutSeconds, MaxTimeoutSeconds, t)
	}
	return t, nil
}

// CommandSpec is the shared command part of workspace_exec and vm_run.
type CommandSpec struct {
	Command string
	Argv    []string
	Cwd     string
	EnvVars map[string]string
	Timeout int
	Stdin   string
}

// ValidateCommand checks a command and fills in defaults.
func ValidateCommand(c *CommandSpec) error {
	hasCmd := strings.TrimSpace(c.Command) != ""
	switch {
	case hasCmd && len(c.Argv) > 0:
		return Invalid("pass exactly one of command (a shell line) and argv (a program and its arguments), not both")
	case !hasCmd && len(c.Argv) == 0:
		if c.Command != "" {
			return Invalid("command is blank; pass a shell command line such as \"make test\"")
		}
		return Invalid("pass command (a shell line such as \"make test\") or argv (such as [\"pytest\", \"-x\"])")
	}
	if len(c.Command) > MaxCommandLen {
		return Invalid("command is %d bytes; the limit is %d: write a script with {{file.write}} and run it", len(c.Command), MaxCommandLen)
	}
	if len(c.Argv) > MaxArgs {
		return Invalid("argv has %d entries; the limit is %d", len(c.Argv), MaxArgs)
	}
	if len(c.Argv) > 0 && c.Argv[0] == "" {
		return Invalid("argv[0] (the program) must not be empty")
	}
	total := 0
	for _, a := range c.Argv {
		total += len(a)
		if strings.IndexByte(a, 0) >= 0 {
			return Invalid("argv entries must not contain NUL bytes")
		}
	}
	if total > MaxCommandLen {
		return Invalid("argv is %d bytes in all; the limit is %d", total, MaxCommandLen)
	}
	if strings.IndexByte(c.Command, 0) >= 0 {
		return Invalid("command must not contain NUL bytes")
	}
	if c.Cwd == "" {
		c.Cwd = DefaultWorkdir
	}
	if err := ValidatePath("cwd", c.Cwd, true); err != nil {
		return err
	}
	if len(c.EnvVars) > MaxEnvVars {
		return Invalid("env_vars has %d entries; the limit is %d", len(c.EnvVars), MaxEnvVars)
	}
	for _, k := range sortedKeys(c.EnvVars) {
		if !envVarRe.MatchString(k) {
			return Invalid("env_vars key %q must match %s", k, defaultEnvVarRegex)
		}
		if v := c.EnvVars[k]; len(v) > MaxEnvValueLen || strings.IndexByte(v, 0) >= 0 {
			return Invalid("env_vars %q must be at most %d bytes without NUL bytes", k, MaxEnvValueLen)
		}
	}
	if len(c.Stdin) > MaxStdinBytes {
		return Invalid("stdin is %d bytes; the limit is %d: write it to a file with {{file.write}} and redirect it", len(c.Stdin), MaxStdinBytes)
	}
	t, err := ValidateTimeout(c.Timeout, DefaultTimeout)
	if err != nil {
		return err
	}
	c.Timeout = t
	return nil
}

// SeedInput is the seed argument of workspace_create and vm_run.
type SeedInput struct {
	Kind string `json:"kind,omitempty" jsonschema:"dir, archive (.tar/.tar.gz/.tgz) or git; default: inferred from path (git if path is empty)"`
	Path string `json:"path,omitempty" jsonschema:"host path, under a directory the server allows; for git, a checkout (default: the server's working directory)"`
}

// ParseSeed validates a seed argument; nil means no seed.
func ParseSeed(in *SeedInput) (SeedSpec, error) {
	if in == nil || (in.Kind == "" && in.Path == "") {
		return SeedSpec{Kind: SeedNone}, nil
	}
	if err := ValidatePath("seed.path", in.Path, false); err != nil {
		return SeedSpec{}, err
	}
	kind := SeedKind(in.Kind)
	if kind == "" {
		switch p := strings.ToLower(in.Path); {
		case strings.HasSuffix(p, ".tar"), strings.HasSuffix(p, ".tar.gz"), strings.HasSuffix(p, ".tgz"):
			kind = SeedArchive
		default:
			kind = SeedDir
		}
	}
	switch kind {
	case SeedNone:
		if in.Path != "" {
			return SeedSpec{}, Invalid("seed.kind none takes no path")
		}
	case SeedDir, SeedArchive:
		if in.Path == "" {
			return SeedSpec{}, Invalid("seed.kind %s needs seed.path (a host %s)", kind, map[SeedKind]string{SeedDir: "directory", SeedArchive: ".tar, .tar.gz or .tgz file"}[kind])
		}
	case SeedGit:
	default:
		return SeedSpec{}, Invalid("seed.kind %q is not one of none, dir, archive, git", in.Kind)
	}
	return SeedSpec{Kind: kind, Path: in.Path}, nil
}

// MaxDiskMiB bounds a workspace's disk (disk_mib). The disk is sparse, so
// its size costs host space only where the guest writes, but each disk
// layer keeps a bitmap of 32 KiB per GiB in host memory and rewrites it
// whole at a flush that finds new clusters: 256 GiB keeps that at 8 MiB a
// layer. The least is the environment's image, which the backend checks.
const MaxDiskMiB = 256 << 10

// ValidateDisk checks a requested disk size; 0 means the backend's default.
func ValidateDisk(disk int) error {
	if disk < 0 || disk > MaxDiskMiB {
		return Invalid("disk_mib must be between the environment's image size and %d (got %d)", MaxDiskMiB, disk).
			WithHint("Leave disk_mib out for the default (8192, a sparse 8 GiB disk), or give a size in MiB.")
	}
	return nil
}

func ValidateResources(vcpus, mem int) error {
	if vcpus < 0 || vcpus > MaxVCPUs {
		return Invalid("vcpus must be between 1 and %d (got %d)", MaxVCPUs, vcpus)
	}
	if mem != 0 && (mem < MinMemMiB || mem > MaxMemMiB) {
		return Invalid("mem_mib must be between %d and %d (got %d)", MinMemMiB, MaxMemMiB, mem)
	}
	return nil
}

// LimitOrDefault returns def for 0, v if it lies in 1..max.
func LimitOrDefault(field string, v, def, max int) (int, error) {
	if v == 0 {
		return def, nil
	}
	if v < 1 || v > max {
		return 0, Invalid("%s must be between 1 and %d (got %d)", field, max, v)
	}
	return v, nil
}

func Printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
