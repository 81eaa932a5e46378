package proto

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Bounds the Client applies to answers, beyond MaxPayload per frame, so
// that an agent that lies (a compromised guest) cannot grow the host's
// memory with one call.
const (
	// MaxNameLen bounds a stat or list answer's name and symlink target:
	// Linux's PATH_MAX. A longer one is a protocol error.
	MaxNameLen = 4096
	// MaxListBytes bounds the host memory one List answer may take: the
	// bytes of its names, types and targets plus listEntryCost for each
	// entry. 64 MiB holds about 280,000 entries with 100-byte paths,
	// more than a caller pages through; an answer past it fails with a
	// CodeTooLarge *Error (an honest agent listing a huge tree gets it
	// too, so it says to list less).
	MaxListBytes = 64 << 20
	// listEntryCost is about the heap a FileInfo takes besides its
	// strings (its fields, slice slot and allocation rounding).
	listEntryCost = 128
	// maxTypeLen bounds FileInfo.Type: the longest Type constant is 7.
	maxTypeLen = 16
	// MaxErrorMessage bounds the message of an Error frame the Client
	// returns (it ends up in tool results and logs); longer ones are
	// clipped. maxCodeLen does the same for its code (an overlong one
	// becomes CodeInternal) and an exec's signal name.
	MaxErrorMessage = 4096
	maxCodeLen      = 32
)

// listBudget is MaxListBytes; tests lower it to stay quick under the race
// detector.
var listBudget = MaxListBytes

// CodeTooLarge says an answer passed a bound the host sets (MaxListBytes):
// the request asked for more than the host will hold at once.
const CodeTooLarge = "too_large"

// Client is the host side of the protocol: each method dials a new stream
// with Dial, sends one request and reads its answer. A Client holds no
// state, so it is safe for concurrent use; concurrent calls use concurrent
// streams. Cancelling a method's context closes its stream, which cancels
// the request in the guest (an exec's process group is killed).
//
// The Client trusts nothing the guest sends: every frame is bounded by
// MaxPayload, lists and reads by the limits the caller gave, a list's
// names and targets by MaxNameLen and its whole answer by MaxListBytes,
// error messages by MaxErrorMessage, and frames out of place are
// protocol errors. Streams whose length the guest
// decides (Exec's output, TarOut's archive) are bounded by the caller:
// stop reading (return an error from the writer, Close the reader) to
// cancel them.
type Client struct {
	// Dial opens a new stream to the agent (a vsock connection to the
	// agent's port). It must honour ctx.
	Dial func(ctx context.Context) (net.Conn, error)
	// Beneath, when set, confines every path this client sends (and every
	// exec's working directory) to that guest directory: see
	// PathArgs.Beneath and Confined. A workspace's client uses
	// "/workspace".
	Beneath string
}

// ExecRequest is a command to run in the guest.
type ExecRequest struct {
	Argv  []string          // program and arguments; the program is looked up in PATH
	Shell string            // or a script for /bin/sh -c (exactly one of Argv and Shell)
	Env   map[string]string // merged over PATH, HOME=/root, LANG=C.UTF-8, TERM=xterm
	Cwd   string            // default "/"
	User  string            // user name or uid[:gid]; default root
	// Stdin, if not nil, is streamed to the process's stdin until it
	// returns io.EOF; nil gives the process /dev/null. Like os/exec, a
	// Stdin blocked in Read when the command ends leaks the goroutine
	// copying it until Read returns.
	Stdin io.Reader
	// Timeout, if positive, bounds the run: the guest then sends SIGTERM
	// to the process group, SIGKILL after KillGrace, and reports TimedOut.
	Timeout   time.Duration
	KillGrace time.Duration // default DefaultKillGrace
}

// Exec runs a command in the guest, writing its stdout and stderr to the
// given writers (nil discards) as they arrive. A nonzero exit or a signal
// is not an error: see ExecResult. An error writing to stdout or stderr
// cancels the command and is returned.
func (c *Client) Exec(ctx context.Context, req ExecRequest, stdout, stderr io.Writer) (ExecResult, error) {
	if (len(req.Argv) == 0) == (req.Shell == "") {
		return ExecResult{}, errorf(CodeInvalid, "exec needs exactly one of Argv and Shell")
	}
	if req.Timeout < 0 || req.KillGrace < 0 {
		return ExecResult{}, errorf(CodeInvalid, "exec timeout and kill grace must not be negative")
	}
	s, err := open(ctx, c, OpExec, ExecArgs{
		Argv: req.Argv, Shell: req.Shell, Env: req.Env, Cwd: req.Cwd, User: req.User,
		Stdin: req.Stdin != nil, TimeoutMs: ceilMs(req.Timeout), KillGraceMs: ceilMs(req.KillGrace),
	})
	if err != nil {
		return ExecResult{}, err
	}
	defer s.close()
	if req.Stdin != nil {
		go s.upload(req.Stdin)
	}
	res, err := s.finish(func(t FrameType, p []byte) error {
		w := stdout
		switch t {
		case FrameStdout:
		case FrameStderr:
			w = stderr
		default:
			return nil
		}
		if w != nil {
			if _, err := w.Write(p); err != nil {
				return fmt.Errorf("writing the command's %s: %w", map[FrameType]string{FrameStdout: "stdout", FrameStderr: "stderr"}[t], err)
			}
		}
		return errHandled
	})
	if len(res.Signal) > maxCodeLen {
		res.Signal = res.Signal[:maxCodeLen] // goes into the journal with every exec
	}
	return res, err
}

// Ping checks the agent answers and returns its version, kernel and uptime.
func (c *Client) Ping(ctx context.Context) (PingResult, error) {
	return call(ctx, c, OpPing, Empty{})
}

// Stat describes path without following a final symlink.
func (c *Client) Stat(ctx context.Context, path string) (FileInfo, error) {
	res, err := call(ctx, c, OpStat, StatArgs{PathArgs: PathArgs{Path: path}})
	if err != nil {
		return FileInfo{}, err
	}
	if err := checkInfo(&res); err != nil {
		return FileInfo{}, err
	}
	return res, nil
}

// checkInfo refuses a FileInfo whose strings pass the bounds, and shares
// the Type constants' storage for the usual types.
func checkInfo(fi *FileInfo) error {
	if len(fi.Name) > MaxNameLen || len(fi.Target) > MaxNameLen || len(fi.Type) > maxTypeLen {
		return protoErrorf("guest sent a file entry whose name (%d bytes), target (%d) or type (%d) is over the %d-byte limit",
			len(fi.Name), len(fi.Target), len(fi.Type), MaxNameLen)
	}
	switch fi.Type {
	case TypeFile:
		fi.Type = TypeFile
	case TypeDir:
		fi.Type = TypeDir
	case TypeSymlink:
		fi.Type = TypeSymlink
	}
	return nil
}

// List lists the directory path (a symlink to a directory is followed;
// symlinks inside are not), recursively if asked, in lexical order, at
// most limit entries (0: DefaultListLimit). Names are relative to path.
// truncated says the limit cut the listing short.
func (c *Client) List(ctx context.Context, path string, recursive bool, limit int) (entries []FileInfo, truncated bool, err error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	if limit > MaxListLimit {
		return nil, false, errorf(CodeInvalid, "list limit %d exceeds %d", limit, MaxListLimit)
	}
	s, err := open(ctx, c, OpList, ListArgs{PathArgs: PathArgs{Path: path}, Recursive: recursive, Limit: limit})
	if err != nil {
		return nil, false, err
	}
	defer s.close()
	var used int
	res, err := s.finish(func(t FrameType, p []byte) error {
		if t != FrameEntries {
			return nil
		}
		// Decode entry by entry, so a frame of a million "{}" is refused
		// at the limit, not after it has been decoded whole.
		dec := json.NewDecoder(bytes.NewReader(p))
		if tok, err := dec.Token(); err != nil || tok == nil {
			if err == nil && tok == nil {
				return errHandled // null: an empty batch
			}
			return protoErrorf("bad Entries frame: %v", err)
		} else if d, ok := tok.(json.Delim); !ok || d != '[' {
			return protoErrorf("bad Entries frame: not a JSON array")
		}
		for dec.More() {
			if len(entries) == limit {
				return protoErrorf("guest listed more than the %d entries asked for", limit)
			}
			var fi FileInfo
			if err := dec.Decode(&fi); err != nil {
				return protoErrorf("bad Entries frame: %v", err)
			}
			if err := checkInfo(&fi); err != nil {
				return err
			}
			if used += listEntryCost + len(fi.Name) + len(fi.Target) + len(fi.Type); used > listBudget {
				return errorf(CodeTooLarge, "listing %s holds more than %d MiB of names after %d entries; list a subdirectory, or not recursively",
					path, listBudget>>20, len(entries))
			}
			entries = append(entries, fi)
		}
		if _, err := dec.Token(); err != nil {
			return protoErrorf("bad Entries frame: %v", err)
		}
		if rest := bytes.TrimSpace(p[dec.InputOffset():]); len(rest) > 0 {
			return protoErrorf("bad Entries frame: %d bytes after the array", len(rest))
		}
		return errHandled
	})
	if err == nil && res.Count != len(entries) {
		err = protoErrorf("list result counts %d entries, %d arrived", res.Count, len(entries))
	}
	return entries, res.Truncated, err
}

// ReadFile reads at most max bytes (0: DefaultReadMax, at most
// MaxReadFile) of the file path from offset, following symlinks. The
// ReadResult says the file's size and whether the read reached its end.
func (c *Client) ReadFile(ctx context.Context, path string, offset, max int64) ([]byte, ReadResult, error) {
	if max <= 0 {
		max = DefaultReadMax
	}
	if max > MaxReadFile || offset < 0 {
		return nil, ReadResult{}, errorf(CodeInvalid, "read_file wants 0 <= offset and max <= %d bytes (use TarOut for more)", MaxReadFile)
	}
	s, err := open(ctx, c, OpReadFile, ReadFileArgs{PathArgs: PathArgs{Path: path}, Offset: offset, Max: max})
	if err != nil {
		return nil, ReadResult{}, err
	}
	defer s.close()
	var data []byte
	res, err := s.finish(func(t FrameType, p []byte) error {
		if t != FrameData {
			return nil
		}
		if int64(len(data)+len(p)) > max {
			return protoErrorf("guest sent more than the %d bytes asked for", max)
		}
		data = append(data, p...)
		return errHandled
	})
	if err == nil && res.N != int64(len(data)) {
		err = protoErrorf("read result counts %d bytes, %d arrived", res.N, len(data))
	}
	return data, res, err
}

// WriteFile replaces the file path atomically (a temporary file renamed
// over it) with what r yields. mode 0 keeps an existing file's permissions
// (0644 for a new file); mkdirParents creates missing parent directories.
// A symlink at path is followed: its target is replaced.
func (c *Client) WriteFile(ctx context.Context, path string, r io.Reader, mode fs.FileMode, mkdirParents bool) error {
	s, err := open(ctx, c, OpWriteFile, WriteFileArgs{PathArgs: PathArgs{Path: path}, Mode: unixMode(mode), MkdirParents: mkdirParents})
	if err != nil {
		return err
	}
	defer s.close()
	go s.upload(r)
	_, err = s.finish(nil)
	return err
}

// TarOut streams the directory dir as a tar archive (directories, regular
// files and symlinks, with modes, owners and mtimes; names relative to dir).
// The archive is complete only if reading reaches io.EOF; an error in the
// guest arrives as the Read error. Close the reader to stop early.
func (c *Client) TarOut(ctx context.Context, dir string) (io.ReadCloser, error) {
	s, err := open(ctx, c, OpTarOut, TarOutArgs{PathArgs: PathArgs{Path: dir}})
	if err != nil {
		return nil, err
	}
	return &tarReader{s: s}, nil
}

// TarIn extracts the tar archive r into the directory dir (created if
// missing). Entries that would land outside dir (absolute names, "..",
// symlinks leading out) fail the whole request; entries before the bad one
// stay extracted. Existing files are replaced, as tar does. Files get the
// archive's modes and mtimes; they are owned by the agent's user (root),
// not the archive's owners. Runs of zeros (and sparse entries) become holes.
func (c *Client) TarIn(ctx context.Context, dir string, r io.Reader) (TarResult, error) {
	s, err := open(ctx, c, OpTarIn, TarInArgs{PathArgs: PathArgs{Path: dir}})
	if err != nil {
		return TarResult{}, err
	}
	defer s.close()
	go s.upload(r)
	return s.finish(nil)
}

// Sync flushes the guest's file system buffers to its disks.
func (c *Client) Sync(ctx context.Context) error {
	_, err := call(ctx, c, OpSync, Empty{})
	return err
}

// Freeze freezes the file system mounted at mountpoint (FIFREEZE): writes
// block until Thaw. Take disk snapshots between the two.
func (c *Client) Freeze(ctx context.Context, mountpoint string) error {
	_, err := call(ctx, c, OpFreeze, FreezeArgs{Mountpoint: mountpoint})
	return err
}

// Thaw thaws a file system Freeze froze (FITHAW).
func (c *Client) Thaw(ctx context.Context, mountpoint string) error {
	_, err := call(ctx, c, OpThaw, ThawArgs{Mountpoint: mountpoint})
	return err
}

// SetTime sets the guest's clock (CLOCK_REALTIME). The guest has no RTC;
// the host sets it after boot and after restoring a snapshot.
func (c *Client) SetTime(ctx context.Context, t time.Time) error {
	_, err := call(ctx, c, OpSetTime, SetTimeArgs{TimeNs: t.UnixNano()})
	return err
}

// Restored tells the agent its VM was just restored from a memory
// snapshot, before anything else runs there: the guest sets its clock,
// mixes a.Entropy into its kernel's random pool and reseeds, and takes
// the boot id, host name and machine id given, so that copies restored
// from one snapshot share neither their randomness nor their identity.
// Arguments that fail a.Check are refused before anything is sent. An
// agent older than the operation answers CodeUnsupported, saying to
// rebuild the environment.
func (c *Client) Restored(ctx context.Context, a RestoredArgs) (RestoredResult, error) {
	if err := a.Check(); err != nil {
		return RestoredResult{}, err
	}
	res, err := call(ctx, c, OpRestored, a)
	switch {
	case err != nil:
	case !validBootID(res.BootID):
		err = protoErrorf("restored: the guest answered a boot id that is not a UUID (%d bytes)", len(res.BootID))
	case a.BootID != "" && res.BootID != a.BootID:
		err = protoErrorf("restored: the guest's boot id reads %s, not the %s it was given", res.BootID, a.BootID)
	}
	if err != nil {
		return RestoredResult{}, err
	}
	return res, nil
}

// Poweroff asks the guest to stop its processes, sync, and power off. The
// stream ending without an answer counts as success: the VM may be gone
// before the answer leaves it.
func (c *Client) Poweroff(ctx context.Context) error {
	s, err := open(ctx, c, OpPoweroff, Empty{})
	if err != nil {
		return err
	}
	defer s.close()
	_, err = s.finish(nil)
	var pe *Error
	if err != nil && !errors.As(err, &pe) && ctx.Err() == nil {
		return nil // the stream died with the VM
	}
	return err
}

// errHandled tells finish that a handler consumed a frame.
var errHandled = errors.New("handled")

// errClosedEarly is wrapped by the error a stream ending before its answer gives.
var errClosedEarly = errors.New("guest agent closed the stream before answering (did the guest crash or power off? see its console)")

// stream is one request's connection, from the client side; R is the
// type of its operation's answer.
type stream[R any] struct {
	op   string // the operation's name, for messages
	ctx  context.Context
	conn net.Conn
	enc  *Encoder
	dec  *Decoder
	stop func() bool

	mu        sync.Mutex
	uploadErr error // reading the caller's reader failed
}

// open dials, sends the hello and op's request with args, and checks the
// agent's hello. Confined arguments get the client's Beneath.
func open[A, R any](ctx context.Context, c *Client, op Op[A, R], args A) (*stream[R], error) {
	if c.Dial == nil {
		return nil, errors.New("proto.Client: Dial is nil")
	}
	if a, ok := any(&args).(Confined); ok {
		a.confine(c.Beneath)
	}
	req, err := NewRequest(op, args)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(req)
	if err != nil || len(b) > MaxPayload {
		return nil, errorf(CodeInvalid, "%s request too large for one frame (%d bytes, at most %d): %v", op, len(b), MaxPayload, err)
	}
	conn, err := c.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to the guest agent: %w", err)
	}
	s := &stream[R]{op: op.Name, ctx: ctx, conn: conn, enc: NewEncoder(conn), dec: NewDecoder(conn)}
	s.stop = context.AfterFunc(ctx, func() { conn.Close() })
	// Hello and request go out in one write; a write error is reported
	// by the read below, which may say why (the agent's hello with
	// another version, or its closing).
	conn.Write(AppendFrame(Hello(Version), FrameRequest, b))
	v, err := ReadHello(s.dec.Reader())
	if err == nil && v != Version {
		s.close()
		return nil, &VersionError{Host: Version, Guest: v}
	}
	if err != nil {
		s.close()
		return nil, s.wrap(err)
	}
	return s, nil
}

func (s *stream[R]) close() {
	s.stop()
	s.conn.Close()
}

// wrap turns a transport error into the most useful error: the context's,
// the upload's, or one that says the stream ended early.
func (s *stream[R]) wrap(err error) error {
	if cerr := s.ctx.Err(); cerr != nil {
		return cerr
	}
	s.mu.Lock()
	uerr := s.uploadErr
	s.mu.Unlock()
	if uerr != nil {
		return uerr
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
		return errClosedEarly
	}
	var pe *Error
	if errors.As(err, &pe) {
		return err
	}
	return fmt.Errorf("guest agent stream: %w", err)
}

// upload sends r as Data frames and then End. If reading r fails, it
// records the error and closes the stream, which cancels the request.
func (s *stream[R]) upload(r io.Reader) {
	buf := make([]byte, ChunkSize)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if s.enc.WriteFrame(FrameData, buf[:n]) != nil {
				return // the stream is done; finish reports why
			}
		}
		if err == io.EOF {
			s.enc.WriteFrame(FrameEnd, nil)
			return
		}
		if err != nil {
			s.mu.Lock()
			s.uploadErr = fmt.Errorf("reading the data to send to the guest: %w", err)
			s.mu.Unlock()
			s.conn.Close()
			return
		}
	}
}

// finish reads frames until the terminal one and returns the Result's
// payload. handle sees every other frame and returns errHandled if it
// used it, nil if the frame is unexpected, or an error that ends the
// request.
func (s *stream[R]) finish(handle func(FrameType, []byte) error) (R, error) {
	var res R
	for {
		t, p, err := s.dec.ReadFrame()
		if err != nil {
			return res, s.wrap(err)
		}
		switch t {
		case FrameResult:
			return res, DecodeJSON(t, p, &res)
		case FrameError:
			return res, s.decodeError(p)
		}
		err = nil
		if handle != nil {
			err = handle(t, p)
		}
		if err == errHandled {
			// A caller that gave up (the exec's deadline, say) stops
			// the reading here, not when the stream's close catches up
			// with a guest that sends without end.
			if cerr := s.ctx.Err(); cerr != nil {
				return res, cerr
			}
			continue
		}
		if err == nil {
			err = protoErrorf("unexpected %v frame from the guest", t)
		}
		return res, err
	}
}

// decodeError decodes an Error frame's payload, bounding what the guest
// sent. An agent that does not know the operation (one built before it
// existed, of the same protocol version) gets an error that says to
// rebuild the environment.
func (s *stream[R]) decodeError(p []byte) error {
	err := decodeError(p)
	var pe *Error
	if errors.As(err, &pe) && pe.Code == CodeInvalid && strings.Contains(pe.Message, "unknown operation") {
		return errorf(CodeUnsupported, "the environment's guest agent is older than this pyro and does not know the %s operation: "+
			"rebuild the environment with this pyro (pyro env build NAME), then restart the workspace", s.op)
	}
	return err
}

// decodeError decodes an Error frame's payload, bounding what the guest sent.
func decodeError(p []byte) error {
	e := &Error{}
	if err := DecodeJSON(FrameError, p, e); err != nil {
		return err
	}
	if e.Code == "" || len(e.Code) > maxCodeLen {
		e.Code = CodeInternal
	}
	e.Message = clip(e.Message, MaxErrorMessage)
	return e
}

// call runs a request that has no frames but its answer.
func call[A, R any](ctx context.Context, c *Client, op Op[A, R], args A) (R, error) {
	s, err := open(ctx, c, op, args)
	if err != nil {
		var zero R
		return zero, err
	}
	defer s.close()
	return s.finish(nil)
}

// tarReader is TarOut's archive: the payloads of Data frames.
type tarReader struct {
	s      *stream[TarResult]
	buf    []byte
	err    error
	once   sync.Once
	closed atomic.Bool
}

func (r *tarReader) Read(p []byte) (int, error) {
	if r.closed.Load() {
		return 0, errors.New("proto: read of a closed TarOut stream")
	}
	for len(r.buf) == 0 && r.err == nil {
		_, r.err = r.s.finish(func(t FrameType, b []byte) error {
			if t != FrameData {
				return nil
			}
			r.buf = b // valid until the next ReadFrame
			return errStop
		})
		if r.err == errStop {
			r.err = nil
		} else if r.err == nil {
			r.err = io.EOF
		}
	}
	if len(r.buf) > 0 {
		n := copy(p, r.buf)
		r.buf = r.buf[n:]
		return n, nil
	}
	return 0, r.err
}

func (r *tarReader) Close() error {
	r.closed.Store(true)
	r.once.Do(r.s.close)
	return nil
}

var errStop = errors.New("stop")

// clip shortens s to at most n bytes, cutting before a rune, and marks
// the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "… (clipped)"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

func ceilMs(d time.Duration) int64 { return int64((d + time.Millisecond - 1) / time.Millisecond) }

// unixMode converts an fs.FileMode's permission bits to st_mode bits.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}
