package contract

import (
	"context"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Request validators. Every face checks what it receives with these before
// it calls a Backend, so that a request means the same whichever face sent
// it: the MCP tool layer calls the small ones on the arguments it parsed,
// the control socket (package mcp/control) calls the Validate* function of
// each operation on the typed request it decoded. They fill in the
// documented defaults where a request leaves a field zero, and return
// *Error Invalid otherwise; messages name arguments by their MCP/JSON names.

// OnWorkspace runs fn with the workspace reference ref; if b does not know
// ref as an ID, it retries once with the ID of the workspace named ref (see
// Backend: backends need not resolve names).
func OnWorkspace(ctx context.Context, b Backend, ref string, fn func(id string) error) error {
	if err := ValidateRef(ref); err != nil {
		return err
	}
	err := fn(ref)
	if e, ok := AsError(err); ok && e.Code == CodeNotFound && e.Resource == ResourceWorkspace {
		list, lerr := b.List(ctx)
		if lerr != nil {
			return err
		}
		for _, w := range list {
			if w.Name == ref && w.ID != ref {
				return fn(w.ID)
			}
		}
	}
	return err
}

// ValidateTTL returns the effective idle lifetime: DefaultTTL for 0.
func ValidateTTL(ttl int) (int, error) {
	if ttl == 0 {
		return DefaultTTL, nil
	}
	if ttl < MinTTLSeconds || ttl > MaxTTLSeconds {
		return 0, Invalid("ttl_seconds must be between %d and %d (got %d)", MinTTLSeconds, MaxTTLSeconds, ttl)
	}
	return ttl, nil
}

// ValidateEnvName checks an environment name as a request gives it ("" is
// the default); whether it exists is the Backend's to say.
func ValidateEnvName(env string) error {
	if len(env) > MaxNameLen*2 || !Printable(env) {
		return Invalid("env %.40q is not an environment name", env)
	}
	return nil
}

// CanonicalGrants checks a non-empty list of grants and returns their
// canonical spellings, duplicates dropped.
func CanonicalGrants(specs []string) ([]string, error) {
	if len(specs) == 0 {
		return nil, Invalid("grants must list at least one grant").WithHint(GrantForms)
	}
	gs, err := ParseGrants(specs)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.String()
	}
	return out, nil
}

// ValidateSecrets checks the secrets a create gives, by name.
func ValidateSecrets(secrets map[string]SecretSource) error {
	if len(secrets) > MaxSecrets {
		return Invalid("%d secrets given; the limit is %d per workspace", len(secrets), MaxSecrets)
	}
	for _, name := range slices.Sorted(maps.Keys(secrets)) {
		if err := ValidateSecretName(name); err != nil {
			return err
		}
		if err := ValidateSecretSource(name, secrets[name]); err != nil {
			return err
		}
	}
	return nil
}

// seedAndGrants checks what a new workspace gets: its seed (the kind
// filled in) and its grants (canonical; none is none).
func seedAndGrants(seed SeedSpec, network []string) (SeedSpec, []string, error) {
	seed, err := ParseSeed(&SeedInput{Kind: string(seed.Kind), Path: seed.Path})
	if err != nil || len(network) == 0 {
		return seed, nil, err
	}
	grants, err := CanonicalGrants(network)
	return seed, grants, err
}

// ValidateCreate checks a create and fills in TTLSeconds, the seed's kind
// and the grants' canonical spellings.
func ValidateCreate(req *CreateRequest) error {
	if req.Name != "" {
		if err := ValidateName("name", req.Name); err != nil {
			return err
		}
	}
	if err := ValidateLabels(req.Labels); err != nil {
		return err
	}
	ttl, err := ValidateTTL(req.TTLSeconds)
	if err != nil {
		return err
	}
	if err := ValidateResources(req.VCPUs, req.MemMiB); err != nil {
		return err
	}
	if err := ValidateDisk(req.DiskMiB); err != nil {
		return err
	}
	if err := ValidateEnvName(req.Env); err != nil {
		return err
	}
	seed, grants, err := seedAndGrants(req.Seed, req.Network)
	if err != nil {
		return err
	}
	if err := ValidateSecrets(req.Secrets); err != nil {
		return err
	}
	req.TTLSeconds, req.Seed, req.Network = ttl, seed, grants
	return nil
}

// ValidateUpdate checks an update: it must change something.
func ValidateUpdate(req UpdateRequest) error {
	if req.Name == nil && len(req.Labels) == 0 && len(req.RemoveLabels) == 0 {
		return Invalid("nothing to update: pass name, labels or remove_labels")
	}
	if req.Name != nil && *req.Name != "" {
		if err := ValidateName("name", *req.Name); err != nil {
			return err
		}
	}
	if err := ValidateLabels(req.Labels); err != nil {
		return err
	}
	for _, k := range req.RemoveLabels {
		if err := ValidateLabelKey(k); err != nil {
			return err
		}
	}
	return nil
}

// ValidateBackgroundTimeout returns a background command's timeout:
// DefaultBackgroundTimeout for 0.
func ValidateBackgroundTimeout(t int) (int, error) {
	if t == 0 {
		return DefaultBackgroundTimeout, nil
	}
	if t < MinTimeoutSeconds || t > MaxBackgroundTimeoutSeconds {
		return 0, Invalid("timeout_seconds must be between %d and %d for a background command (got %d)",
			MinTimeoutSeconds, MaxBackgroundTimeoutSeconds, t)
	}
	return t, nil
}

// ValidateExec checks a command to run in a workspace, in the foreground
// (Exec) or the background (ExecStart), and fills in Cwd and
// TimeoutSeconds. The workspace reference (ID) is checked where it is
// resolved (OnWorkspace).
func ValidateExec(req *ExecRequest, background bool) error {
	c := CommandSpec{Command: req.Command, Argv: req.Argv, Cwd: req.Cwd, EnvVars: req.EnvVars, Timeout: req.TimeoutSeconds, Stdin: req.Stdin}
	if background {
		c.Timeout = 0 // a background command's timeout has its own bounds
	}
	if err := ValidateCommand(&c); err != nil {
		return err
	}
	if err := ValidateSecretEnv(req.SecretEnv, c.EnvVars); err != nil {
		return err
	}
	t := c.Timeout
	if background {
		var err error
		if t, err = ValidateBackgroundTimeout(req.TimeoutSeconds); err != nil {
			return err
		}
	}
	req.Cwd, req.TimeoutSeconds = c.Cwd, t
	return nil
}

// ValidateRun checks a one-shot run and fills in its defaults.
func ValidateRun(req *RunRequest) error {
	c := CommandSpec{Command: req.Command, Argv: req.Argv, Cwd: req.Cwd, EnvVars: req.EnvVars, Timeout: req.TimeoutSeconds, Stdin: req.Stdin}
	if err := ValidateCommand(&c); err != nil {
		return err
	}
	if err := ValidateResources(req.VCPUs, req.MemMiB); err != nil {
		return err
	}
	if err := ValidateEnvName(req.Env); err != nil {
		return err
	}
	seed, grants, err := seedAndGrants(req.Seed, req.Network)
	if err != nil {
		return err
	}
	req.Cwd, req.TimeoutSeconds, req.Seed, req.Network = c.Cwd, c.Timeout, seed, grants
	return nil
}

// ValidateListOffset checks a listing's cursor (entries to skip).
func ValidateListOffset(offset int) error {
	if offset < 0 {
		return Invalid("offset must not be negative (got %d)", offset)
	}
	if offset > MaxListOffset {
		return Invalid("cursor %d is past the first %d entries {{file.list}} pages through", offset, MaxListOffset).
			WithHint("List a subdirectory (path), or list without recursive.")
	}
	return nil
}

// ValidateListFiles checks a listing and fills in Path and Limit.
func ValidateListFiles(req *ListFilesRequest) error {
	if req.Path == "" {
		req.Path = DefaultWorkdir
	}
	if err := ValidatePath("path", req.Path, true); err != nil {
		return err
	}
	limit, err := LimitOrDefault("limit", req.Limit, DefaultListLimit, MaxListLimit)
	if err != nil {
		return err
	}
	req.Limit = limit
	return ValidateListOffset(req.Offset)
}

// ValidateReadRange checks a read's offset and max_bytes (0: the face's
// default).
func ValidateReadRange(offset int64, maxBytes int) error {
	if offset < 0 {
		return Invalid("offset must be >= 0 (got %d)", offset)
	}
	if maxBytes < 0 || maxBytes > MaxReadBytes {
		return Invalid("max_bytes must be between 1 and %d (got %d)", MaxReadBytes, maxBytes)
	}
	return nil
}

// ValidateReadFile checks a read and fills in MaxBytes (DefaultReadBytes).
func ValidateReadFile(req *ReadFileRequest) error {
	if err := ValidatePath("path", req.Path, true); err != nil {
		return err
	}
	if err := ValidateReadRange(req.Offset, req.MaxBytes); err != nil {
		return err
	}
	if req.MaxBytes == 0 {
		req.MaxBytes = DefaultReadBytes
	}
	return nil
}

// ValidateWriteContent checks the size of a file write's content.
func ValidateWriteContent(n int) error {
	if n > MaxWriteBytes {
		return Invalid("content is %d bytes; the limit is %d: split the file, or use {{sync.push}} for large files", n, MaxWriteBytes)
	}
	return nil
}

// ParseMode reads permission bits written in octal ("0644", "755"); ""
// is 0 (keep the file's mode, or 0644 for a new file).
func ParseMode(s string) (uint32, error) {
	if s == "" {
		return 0, nil
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, Invalid("mode %.20q must be octal permissions such as 0644 or 0755", s)
	}
	return uint32(m), nil
}

// ValidateWriteFile checks a file write.
func ValidateWriteFile(req *WriteFileRequest) error {
	if err := ValidatePath("path", req.Path, true); err != nil {
		return err
	}
	if err := ValidateWriteContent(len(req.Content)); err != nil {
		return err
	}
	if req.Mode > 0o7777 {
		return Invalid("mode %o must be permission bits such as 0644 or 0755", req.Mode)
	}
	return nil
}

// ValidatePatch checks a patch's presence and size; whether it parses is
// the Backend's to say.
func ValidatePatch(patch string) error {
	if strings.TrimSpace(patch) == "" {
		return Invalid("patch is empty: pass a unified diff (--- a/FILE, +++ b/FILE, @@ hunks)")
	}
	if len(patch) > MaxPatchBytes {
		return Invalid("patch is %d bytes; the limit is %d: split it into several calls", len(patch), MaxPatchBytes)
	}
	return nil
}

// ValidateDiff checks a diff request.
func ValidateDiff(req *DiffRequest) error { return ValidatePath("path", req.Path, false) }

// ParseExportFormat reads an export format; "" is ExportAuto.
func ParseExportFormat(s string) (ExportFormat, error) {
	switch f := ExportFormat(s); f {
	case "":
		return ExportAuto, nil
	case ExportAuto, ExportTree, ExportTar:
		return f, nil
	}
	return "", Invalid("format %.20q must be auto, tree or tar", s)
}

// ValidateExport checks an export and fills in GuestPath and Format.
func ValidateExport(req *ExportRequest) error {
	if req.GuestPath == "" {
		req.GuestPath = DefaultWorkdir
	}
	if err := ValidatePath("guest_path", req.GuestPath, true); err != nil {
		return err
	}
	if err := ValidatePath("host_path", req.HostPath, true); err != nil {
		return err
	}
	f, err := ParseExportFormat(string(req.Format))
	if err != nil {
		return err
	}
	req.Format = f
	return nil
}

// ValidateSyncPush checks a push into the guest and fills in GuestDest.
func ValidateSyncPush(req *SyncPushRequest) error {
	if err := ValidatePath("host_path", req.HostPath, true); err != nil {
		return err
	}
	if req.GuestDest == "" {
		req.GuestDest = DefaultWorkdir
	}
	return ValidatePath("guest_dest", req.GuestDest, true)
}

// ValidateLogs checks a journal page request and fills in Limit.
func ValidateLogs(req *LogsRequest) error {
	if req.AfterSeq < 0 {
		return Invalid("after_seq must not be negative (got %d)", req.AfterSeq)
	}
	limit, err := LimitOrDefault("limit", req.Limit, DefaultLogsLimit, MaxLogsLimit)
	if err != nil {
		return err
	}
	req.Limit = limit
	return nil
}

// ValidatePoll checks a background command poll's bounds. Seq 0 is left
// to the face: the MCP layer lists the commands then.
func ValidatePoll(req PollRequest) error {
	switch {
	case req.Seq < 0:
		return Invalid("seq must be a command's seq from {{exec}} (got %d)", req.Seq)
	case req.Wait < 0 || req.Wait > MaxPollWaitSeconds*time.Second:
		return Invalid("wait_seconds must be between 0 and %d (got %d); poll again to wait longer", MaxPollWaitSeconds, int64(req.Wait/time.Second))
	case req.StdoutOffset < 0 || req.StderrOffset < 0:
		return Invalid("stdout_offset and stderr_offset must not be negative")
	}
	return nil
}

// ValidateGuestPort checks a guest TCP port.
func ValidateGuestPort(p int) error {
	if p < 1 || p > 65535 {
		return Invalid("guest_port must be 1-65535 (got %d)", p)
	}
	return nil
}

// ValidatePublish checks a port publication (HostPort 0: a free port).
func ValidatePublish(req PublishRequest) error {
	if err := ValidateGuestPort(req.GuestPort); err != nil {
		return err
	}
	if req.HostPort < 0 || req.HostPort > 65535 {
		return Invalid("host_port must be 1-65535, or omitted for a free one (got %d)", req.HostPort)
	}
	return nil
}

// Services.

// MaxServiceLogBytes bounds the bytes of each stream one service logs
// read returns (the guest agent's own bound).
const MaxServiceLogBytes = 256 << 10

var serviceNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// ValidateServiceName checks a service's name.
func ValidateServiceName(name string) error {
	if !serviceNameRe.MatchString(name) {
		return Invalid("service name %.80q must be 1-64 lower-case letters, digits, _ . - starting with a letter or digit (e.g. web)", name)
	}
	return nil
}

// ServiceWait returns how long a service start or restart waits for
// readiness: DefaultServiceWaitSeconds for 0.
func ServiceWait(d time.Duration) (time.Duration, error) {
	if d == 0 {
		return DefaultServiceWaitSeconds * time.Second, nil
	}
	if d < 0 || d > MaxServiceWaitSeconds*time.Second {
		return 0, Invalid("wait_seconds must be between 1 and %d (got %d)", MaxServiceWaitSeconds, int64(d/time.Second))
	}
	return d, nil
}

// ServiceGrace returns a service stop's SIGTERM to SIGKILL grace:
// DefaultServiceGraceSeconds for 0.
func ServiceGrace(d time.Duration) (time.Duration, error) {
	if d == 0 {
		return DefaultServiceGraceSeconds * time.Second, nil
	}
	if d < 0 || d > MaxServiceGraceSeconds*time.Second {
		return 0, Invalid("grace_seconds must be between 1 and %d (got %d)", MaxServiceGraceSeconds, int64(d/time.Second))
	}
	return d, nil
}

// ValidateServiceStart checks a service start and fills in Cwd, Wait,
// Restart ("no" is "") and MaxRestarts.
func ValidateServiceStart(req *ServiceStartRequest) error {
	if err := ValidateServiceName(req.Name); err != nil {
		return err
	}
	c := CommandSpec{Command: req.Command, Argv: req.Argv, Cwd: req.Cwd, EnvVars: req.EnvVars}
	if err := ValidateCommand(&c); err != nil {
		return err
	}
	if len(req.User) > MaxNameLen || strings.IndexByte(req.User, 0) >= 0 {
		return Invalid("user must be a guest user name or uid[:gid]")
	}
	if err := ValidateSecretEnv(req.SecretEnv, c.EnvVars); err != nil {
		return err
	}
	wait, err := ServiceWait(req.Wait)
	if err != nil {
		return err
	}
	req.Cwd, req.Wait = c.Cwd, wait
	switch req.Restart {
	case "", "no":
		if req.MaxRestarts != 0 {
			return Invalid("max_restarts needs restart: on-failure")
		}
		req.Restart = ""
	case "on-failure":
		if req.MaxRestarts == 0 {
			req.MaxRestarts = 3
		}
		if req.MaxRestarts < 0 || req.MaxRestarts > 100 {
			return Invalid("max_restarts must be 1 to 100")
		}
	default:
		return Invalid("restart must be no or on-failure, not %.40q", req.Restart)
	}
	return ValidateReadiness(&req.Readiness)
}

// ValidateReadiness checks a readiness check; the zero value (no check)
// passes, and only the fields of its kind are kept.
func ValidateReadiness(r *Readiness) error {
	if *r == (Readiness{}) {
		return nil
	}
	if r.TimeoutSeconds < 0 || r.TimeoutSeconds > MaxReadyTimeoutSeconds || r.IntervalMs < 0 || r.IntervalMs > 60000 ||
		(r.IntervalMs > 0 && r.IntervalMs < 10) {
		return Invalid("readiness timeout_seconds must be 1 to %d and interval_ms 10 to 60000", MaxReadyTimeoutSeconds)
	}
	rd := Readiness{Kind: r.Kind, TimeoutSeconds: r.TimeoutSeconds, IntervalMs: r.IntervalMs}
	switch r.Kind {
	case ReadyFile:
		if err := ValidatePath("readiness.path", r.Path, true); err != nil {
			return err
		}
		rd.Path = r.Path
	case ReadyTCP:
		if r.Port < 1 || r.Port > 65535 {
			return Invalid("readiness.port must be 1 to 65535 (a guest TCP port)")
		}
		rd.Port = r.Port
	case ReadyHTTP:
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(r.URL) > MaxPathLen {
			return Invalid("readiness.url must be an http:// URL inside the guest, e.g. http://127.0.0.1:8000/")
		}
		rd.URL = r.URL
	case ReadyCommand:
		if strings.TrimSpace(r.Command) == "" || len(r.Command) > MaxCommandLen || strings.IndexByte(r.Command, 0) >= 0 {
			return Invalid("readiness.command must be a shell command that exits 0 when ready")
		}
		rd.Command = r.Command
	default:
		return Invalid("readiness.kind must be file, tcp, http or command, not %.40q", r.Kind)
	}
	*r = rd
	return nil
}

// ValidateServiceStream checks which of a service's streams to read.
func ValidateServiceStream(s string) error {
	switch s {
	case "", "both", "stdout", "stderr":
		return nil
	}
	return Invalid("stream must be stdout, stderr or both")
}

// ValidateServiceLogs checks a service logs read: the last TailLines
// lines, or (TailLines 0) from the offsets, at most MaxBytes a stream (0:
// the guest's default).
func ValidateServiceLogs(req *ServiceLogsRequest) error {
	if err := ValidateServiceName(req.Name); err != nil {
		return err
	}
	if err := ValidateServiceStream(req.Stream); err != nil {
		return err
	}
	switch {
	case req.TailLines < 0 || req.TailLines > MaxServiceTailLines:
		return Invalid("tail_lines must be between 1 and %d (got %d)", MaxServiceTailLines, req.TailLines)
	case req.StdoutOffset < 0 || req.StderrOffset < 0:
		return Invalid("the cursor's offsets must not be negative")
	case req.MaxBytes < 0 || req.MaxBytes > MaxServiceLogBytes:
		return Invalid("max_bytes must be between 1 and %d (got %d)", MaxServiceLogBytes, req.MaxBytes)
	}
	return nil
}

// Shells.

// Terminal size bounds.
const (
	MaxShellCols = 1000
	MaxShellRows = 1000
)

// NewShellWait builds a shell call's wait from a face's arguments:
// timeout 0 and a nil idle take the defaults (DefaultShellTimeout,
// DefaultShellIdle), pattern "" waits for no pattern.
func NewShellWait(timeout time.Duration, idle *time.Duration, pattern string) (ShellWait, error) {
	w := ShellWait{Idle: DefaultShellIdle, Timeout: DefaultShellTimeout}
	if timeout < 0 || timeout > MaxShellTimeout {
		return w, Invalid("timeout_seconds must be 0 to %d", int(MaxShellTimeout.Seconds())).
			WithHint("Wait in several calls: {{shell.read}} picks up where the last read ended.")
	}
	if timeout > 0 {
		w.Timeout = timeout
	}
	if idle != nil {
		if *idle < 0 || *idle > MaxShellTimeout {
			return w, Invalid("wait_idle_ms must be 0 to %d", MaxShellTimeout.Milliseconds())
		}
		w.Idle = *idle
	}
	if pattern != "" {
		re, err := CompileShellPattern(pattern)
		if err != nil {
			return w, err
		}
		w.Pattern = re
	}
	return w, nil
}

// CompileShellPattern compiles a shell call's wait_for.
func CompileShellPattern(pattern string) (*regexp.Regexp, error) {
	if len(pattern) > MaxShellPattern {
		return nil, Invalid("wait_for is %d bytes; at most %d", len(pattern), MaxShellPattern)
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, Invalid("wait_for is not a regular expression: %v", err).
			WithHint("Escape special characters with a backslash (\\$, \\(, \\.), or use regexp.QuoteMeta-style quoting.")
	}
	return re, nil
}

// ValidateShellWait checks a wait a face built (NewShellWait, or one that
// came over the wire): its bounds and pattern.
func ValidateShellWait(w ShellWait) error {
	var idle *time.Duration
	if w.Idle != 0 {
		idle = &w.Idle
	}
	pattern := ""
	if w.Pattern != nil {
		pattern = w.Pattern.String()
	}
	_, err := NewShellWait(w.Timeout, idle, pattern)
	return err
}

// ValidateShellNumber checks a shell's number.
func ValidateShellNumber(n int) error {
	if n <= 0 {
		return Invalid("shell must be a shell number from {{shell.open}} or {{shell.list}}").WithHint("Call {{shell.list}} to see the workspace's shells.")
	}
	return nil
}

// ValidateShellSize checks a terminal size; zero (both) means the
// default where zero is allowed (a shell's open).
func ValidateShellSize(cols, rows int, zeroOK bool) error {
	lo := 1
	if zeroOK {
		lo = 0
	}
	if cols < lo || rows < lo || cols > MaxShellCols || rows > MaxShellRows {
		return Invalid("cols and rows must be 1 to %d", MaxShellCols)
	}
	return nil
}

// ParseShellSignal returns the signal a shell call names ("int", "SIGINT"
// and "INT" are INT), one of those a shell's foreground may be sent.
func ParseShellSignal(s string) (string, error) {
	sig := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "SIG")
	if !slices.Contains([]string{"INT", "TERM", "KILL", "HUP", "QUIT", "TSTP", "CONT"}, sig) {
		return "", Invalid("signal %q is not one of INT, TERM, KILL, HUP, QUIT, TSTP, CONT", s)
	}
	return sig, nil
}

// ValidateShellCursor checks a shell read's cursor: raw output only.
func ValidateShellCursor(raw bool, cursor *int64) error {
	if cursor != nil && (!raw || *cursor < 0) {
		return Invalid("cursor re-reads raw output: give it with raw=true, and not negative")
	}
	return nil
}

// ValidateShellOpen checks a shell's start and fills in Cwd. Neither Argv
// nor Command starts the login shell.
func ValidateShellOpen(req *ShellOpenRequest) error {
	c := CommandSpec{Command: req.Command, Argv: req.Argv, Cwd: req.Cwd, EnvVars: req.EnvVars}
	if c.Command == "" && len(c.Argv) == 0 {
		c.Argv = []string{"login-shell"} // neither: the login shell; check the rest
	}
	if err := ValidateCommand(&c); err != nil {
		return err
	}
	if err := ValidateSecretEnv(req.SecretEnv, c.EnvVars); err != nil {
		return err
	}
	if err := ValidateShellSize(req.Cols, req.Rows, true); err != nil {
		return err
	}
	req.Cwd = c.Cwd
	return ValidateShellWait(req.Wait)
}

// ValidateShellRead checks a shell read.
func ValidateShellRead(req *ShellReadRequest) error {
	if err := ValidateShellNumber(req.Shell); err != nil {
		return err
	}
	if err := ValidateShellCursor(req.Raw, req.Cursor); err != nil {
		return err
	}
	return ValidateShellWait(req.Wait)
}

// ValidateShellInput checks the bytes one shell call types.
func ValidateShellInput(n int) error {
	if n == 0 {
		return Invalid("nothing to type: give text, keys or newline").WithHint("Use {{shell.read}} to read without typing.")
	}
	if n > MaxShellInput {
		return Invalid("%d bytes of input; at most %d per call", n, MaxShellInput).
			WithHint("Send long input in parts, or write it to a file with {{file.write}} and read it from the shell.")
	}
	return nil
}

// ValidateShellWrite checks a shell write.
func ValidateShellWrite(req *ShellWriteRequest) error {
	if err := ValidateShellNumber(req.Shell); err != nil {
		return err
	}
	if err := ValidateShellInput(len(req.Input)); err != nil {
		return err
	}
	return ValidateShellWait(req.Wait)
}

// ValidateShellSignal checks a shell signal and spells Signal as
// ParseShellSignal does.
func ValidateShellSignal(req *ShellSignalRequest) error {
	if err := ValidateShellNumber(req.Shell); err != nil {
		return err
	}
	sig, err := ParseShellSignal(req.Signal)
	if err != nil {
		return err
	}
	req.Signal = sig
	return ValidateShellWait(req.Wait)
}
