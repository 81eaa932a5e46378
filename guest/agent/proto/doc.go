// Package proto is the wire protocol between pyro (the host) and its guest
// agent (PID 1 inside every workspace VM), and the host-side Client.
//
// Data path: the workspace manager calls a Client method; the Client dials
// a fresh virtio-vsock stream to the guest (Client.Dial, given by the VMM's
// vsock device), speaks this protocol on it, and the agent
// (guest/agent.Server) serves the request inside the guest. The agent uses
// the same frame encoder and decoder, so the two sides cannot drift apart.
// It also holds what the two sides agree on outside a stream (guest.go):
// the agent's vsock port, its console markers and the guest network plan.
// Host code imports this package, never the agent's.
//
// # Streams
//
// Every request gets its own stream (vsock connection), used once and then
// closed. Concurrency is several streams at once: a slow exec never blocks a
// file read, and cancelling a request is simply closing its stream. A
// stream costs one vsock handshake, which is far cheaper than the process
// start it usually carries.
//
// # Hello
//
// Both sides first send an 8-byte hello: the 6 ASCII bytes "PYROAG" then the
// protocol version as a little-endian uint16 (Version, now 3). The client
// sends its hello and its Request frame without waiting (one write); the
// server reads the client's hello and, if the versions match, the Request,
// and then answers with its own hello. If the versions differ it sends its
// hello and closes the stream; if the magic is wrong it closes the stream
// without a word. Either side that sees a different version reports both
// numbers (VersionError, which says to rebuild the environment: pyro env
// build NAME puts this pyro in its initramfs); there is no negotiation,
// since the guest's /init is the pyro binary that built the environment.
// Version 2 added confinement (below); version 3 gave each operation its
// own arguments object.
//
// # Frames
//
// After the hello, each direction is a sequence of frames:
//
//	type   uint8
//	length uint32, little endian, at most MaxPayload (1 MiB)
//	payload [length]byte
//
// A receiver rejects a length above MaxPayload before reading the payload,
// and an unknown type, a frame in the wrong direction or out of order, as a
// protocol error. JSON payloads are UTF-8 objects; unknown fields are
// ignored.
//
//	0x01 Request  client→server  JSON Request {"op","args"}; exactly one, the first frame
//	0x02 Data     both           raw bytes: exec stdin, write_file content and
//	                             tar_in archive (client→server); read_file
//	                             content and tar_out archive (server→client)
//	0x03 End      both           empty: no more Data (stdin EOF, end of upload;
//	                             in a dial, either side's half-close)
//	0x10 Stdout   server→client  raw bytes the process wrote to stdout
//	0x11 Stderr   server→client  raw bytes the process wrote to stderr
//	0x12 Entries  server→client  JSON array of FileInfo (list), in batches
//	0x13 Result   server→client  JSON, per operation; last frame, success
//	0x14 Error    server→client  JSON Error {"code","message"}; last frame
//	0x15 Open     server→client  empty: a dial connected; Data and End follow
//
// The server ends every stream with exactly one Result or Error frame and
// then closes it. A client must not half-close its side: the server reads
// end-of-stream before its last frame as "the host went away" and cancels
// the request (an exec's process group is killed).
//
// # Operations
//
// A Request is {"op": NAME, "args": {...}}: the operation's name and its
// arguments, a JSON object of the operation's own type (left out where it
// takes none). Each Op value (OpExec, ...) ties a name to its argument
// and answer types, and both the Client and the agent's dispatcher go
// through it. An unknown op is CodeInvalid "unknown operation"; arguments
// that are not an object of the operation's type are CodeProtocol.
//
// The operations, their argument fields, what the client sends after the
// Request and what the server answers. Paths are absolute guest paths;
// every path operation's arguments embed PathArgs (path, beneath).
//
//	op          args (type: fields)             client then sends   server sends
//	ping        -                               -                   Result PingResult
//	exec        ExecArgs: argv|shell, env, cwd, Data* End if stdin  Stdout* Stderr* (interleaved),
//	            beneath, stdin, timeout_ms,                         Result ExecResult
//	            kill_grace_ms, user
//	stat        StatArgs: path, beneath         -                   Result FileInfo
//	list        ListArgs: path, beneath,        -                   Entries*, Result ListResult
//	            recursive, limit
//	read_file   ReadFileArgs: path, beneath,    -                   Data*, Result ReadResult
//	            offset, max
//	write_file  WriteFileArgs: path, beneath,   Data* End           Result WriteResult
//	            mode, mkdir_parents
//	tar_out     TarOutArgs: path, beneath       -                   Data* (a tar stream), Result TarResult
//	tar_in      TarInArgs: path, beneath        Data* End (tar)     Result TarResult
//	sync        -                               -                   Result {}
//	freeze      FreezeArgs: mountpoint          -                   Result {}
//	thaw        ThawArgs: mountpoint            -                   Result {}
//	set_time    SetTimeArgs: time_ns            -                   Result {}
//	restored    RestoredArgs: time_ns, entropy, -                   Result RestoredResult
//	            hostname, boot_id, machine_id
//	poweroff    -                               -                   Result {}, then the VM powers off
//	dial        DialArgs: port                  Data* End           Open, Data* End, Result DialResult
//	service_start    ServiceStartArgs: name, argv|shell, cwd, env, user,  -  Result ServiceStatus
//	                 readiness, restart, max_restarts, wait_ms
//	service_status   ServiceNameArgs: name          -                   Result ServiceStatus
//	service_list     -                              -                   Result ServiceList
//	service_logs     ServiceLogsArgs: name, stream,  -                  Result ServiceLogs
//	                 tail_lines, stdout_offset, stderr_offset, max_bytes
//	service_stop     ServiceStopArgs: name, grace_ms  -                 Result ServiceStatus
//	service_restart  ServiceRestartArgs: name, grace_ms, wait_ms  -     Result ServiceStatus
//	service_stop_all ServiceStopAllArgs: grace_ms   -                   Result ServiceList
//	shell_open  ShellOpenArgs: argv|command,    -                   Result ShellInfo
//	            env, cwd, user, cols, rows
//	shell_read  ShellReadArgs: id, cursor, max, -                   Data*, Result ShellReadResult
//	            wait_ms, idle_ms
//	shell_write ShellWriteArgs: id, data        -                   Result ShellWriteResult
//	shell_signal ShellSignalArgs: id, signal    -                   Result ShellSignalResult
//	shell_resize ShellResizeArgs: id, cols, rows -                  Result {}
//	shell_close ShellCloseArgs: id, grace_ms    -                   Result ShellInfo
//	shell_list  -                               -                   Result ShellListResult
//
// The service operations (service.go has the primer) were added without a
// new version: an older agent answers them CodeUnsupported (below).
// service_start waits at most wait_ms for readiness and answers "starting"
// past it; the service goes on running after its stream closes, unlike an
// exec, until a stop, its own exit or the VM's end.
//
// restored, also added without a new version, is the host's first request
// to a guest it has restored from a memory snapshot: one snapshot may be
// restored many times, and each copy must get its own randomness and
// identity. The agent checks every argument first (RestoredArgs.Check),
// so a refused request changes nothing; then it writes entropy (32 to
// 512 bytes) into the kernel's input pool crediting every bit
// (RNDADDENTROPY) and reseeds the generator (RNDRESEEDCRNG; reseeded is
// false where the kernel lacks it), sets CLOCK_REALTIME to time_ns, and,
// for each that is set: bind-mounts a file on /run (a tmpfs) holding
// boot_id read-only over /proc/sys/kernel/random/boot_id, which the
// kernel fixes at boot (the previous restore's mount is detached first,
// never stacked on); sets the kernel's host name (no file changes);
// replaces /etc/machine-id by machine_id when the guest has one (a
// non-empty regular file). It answers the boot id /proc reads then.
//
// A shell (shell.go) is a program on a pseudo-terminal that outlives its
// stream: shell_open starts it and answers its id, and the other shell
// operations name it. Its output is kept in a ring of ShellBuffer bytes;
// a cursor is an absolute byte offset, and a read from a cursor the ring
// has dropped starts at the oldest byte kept and says how many it
// skipped. shell_read may wait for output, for the output to go idle or
// for the exit; the host closing the stream ends the wait. shell_signal
// reaches the terminal's foreground process group; shell_close hangs the
// terminal up (SIGHUP) and kills what is left after a grace. The agent
// keeps at most MaxShells, in cgroups of their own like execs'.
//
// An exec without "stdin": true reads /dev/null and the client sends nothing
// after its Request. The command runs in its own process group; the server
// kills the group (SIGTERM, then SIGKILL after kill_grace_ms) on timeout,
// when the stream ends early, and when any frame arrives that should not
// (Data after End, anything without stdin). Output is streamed until the
// process exits and its pipes stay idle for 250 ms (background processes
// may hold them open). ExecResult.exit_code is -1 when a signal killed it.
// In a guest the command runs in its own cgroup under the limits on user
// commands (process count, memory, CPU weight); a timeout or cancel kills
// that whole cgroup, and the result counts what the limits did
// (pids_limited, oom_kills, disk_full, and processes left running or
// killed).
//
// A dial connects to the guest's TCP port on its loopback, 127.0.0.1 and
// then ::1 (a service on 0.0.0.0 answers on 127.0.0.1): it is how a
// published port reaches a service bound to localhost in the guest. If
// nothing answers, the server sends Error ECONNREFUSED; else Open, and
// then relays bytes both ways: the host's Data to the service, the
// service's bytes back as Data. End in either direction is a half-close
// (the agent shuts down the service's write side on the host's End, and
// sends End when the service shuts down its own). Once both directions
// have ended the server sends Result and closes; the host closing the
// stream aborts the connection. The agent serves at most a fixed number
// of dials at once (more get CodeBusy), so published ports cannot take
// every stream from exec and the file tools.
//
// An operation may be added without a new version when older agents
// still serve every other operation (dial was): such an agent answers it
// with CodeInvalid "unknown operation", and the Client turns that into
// CodeUnsupported with a message that says to rebuild the environment.
//
// A read_file, list or tar_out answer is streamed as it is produced; a
// write_file replaces its target by renaming a temporary file over it only
// after End. tar_in extracts beneath path only (openat2 RESOLVE_BENEATH):
// an entry that would land elsewhere fails the request with EXDEV.
//
// # Confinement
//
// A request may name a directory in "beneath" (Client.Beneath sets it on
// every request whose arguments are Confined: the path operations' and
// exec's). The agent then resolves the request's
// path, and an exec's cwd, with openat2(RESOLVE_BENEATH) from that
// directory before doing anything: a path that leaves it through "..", an
// absolute path elsewhere or a symlink (absolute symlinks always count as
// leaving) fails with EXDEV. A path that does not exist yet is judged by
// its nearest existing ancestor. stat does not follow a final symlink, the
// other operations do. The operation then opens its target the same way
// and works on that descriptor (trees are walked with *at calls that never
// follow a symlink), so a symlink swapped in after the check leads
// nowhere. This is how every file tool of a workspace stays in
// /workspace. Version 2 added it: an agent that ignored the field would
// silently not confine, so version 1 agents are refused.
//
// # Errors
//
// Error.Code is an errno name for failures of a system call ("ENOENT",
// "EACCES", "EXDEV", ...) or one of CodeInvalid, CodeProtocol, CodeBusy,
// CodeUnsupported, CodeInternal. Error.Message is for people and says what
// to do. Client methods return *Error for these; errors.Is(err,
// fs.ErrNotExist) and its siblings work on them.
package proto
