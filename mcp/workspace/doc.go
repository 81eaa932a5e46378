// Package workspace is the workspace manager behind `pyro mcp serve`: it
// implements mcp.Backend over microVMs (guest/instance), their layered
// disks (vmm/disk) and a state directory on the host.
//
// Where it sits in the data path:
//
//	MCP tool layer (mcp) ─▶ Manager ─▶ guest agent client (exec, files, tar) ─▶ VM
//	                           │  └──▶ disk.Stack (baseline, snapshots, reset)
//	                           └─────▶ hostio (host ⇄ tar), treediff (diff), patch
//
// # State
//
// Each workspace is a directory StateDir/workspaces/ID/:
//
//	record.json    metadata, replaced atomically (temp, fsync, rename, fsync dir)
//	disk/          the disk.Stack over the environment's rootfs.ext4
//	baseline/      treediff index and blobs of /workspace right after seeding
//	journal.jsonl  one fsynced JSON line per exec, write, patch, sync, export,
//	               snapshot, reset and lifecycle event; past 8 MiB it becomes
//	               journal.1.jsonl (one older generation is kept)
//	out/SEQ.stdout, out/SEQ.stderr   an exec's whole output (capped; the
//	               latest 32 execs' are kept)
//	diffs/NNNNNN.patch               diff results, for the agent to read on the host
//	console.log    the guest's serial console of the current boot (capped)
//
// The record is written last at create, so a directory without one is a
// create that never finished, and Open removes it; a delete renames the
// directory aside (".deleting-ID") before removing it. Killing the server
// at any point loses running VMs, never data: the record is atomic, the
// journal loses at most a torn last line, and disk.Stack is crash
// consistent. Open boots nothing and lists every workspace as stopped.
//
// Several Managers may share a state directory; owner.lock in each
// workspace directory says which one holds it (see Open), and
// StateDir/lock orders their scans against creates and deletes.
// StateDir/memory.json, under StateDir/memory.lock, is their common
// ledger of running VMs' memory (see budget.go).
//
// # Host resources
//
// A VM boots only if the host's memory can hold it beside every running
// VM of every server on the state directory; a workspace keeps at most 32
// snapshots; create, snapshot and export need 512 MiB free on the state
// directory's file system. A workspace idle past its TTL is stopped
// (expired), and its disk, baseline and output files are deleted after
// the retention period (Options.Retention, a week by default); its record
// and journal stay and say so.
//
// # Checkpoints
//
// The baseline and every snapshot are frozen disk layers, taken after the
// guest synced and froze (FIFREEZE) its root file system. Reset kills the
// VM, starts a new top layer on the target layer and boots again:
// whole-disk state (installed packages included) returns, running
// processes do not. The layers form a tree, so a reset keeps every
// snapshot.
//
// # Concurrency
//
// Calls that work inside a running VM run concurrently; calls that change
// the VM or its disk exclude everything else on that workspace (see
// workspace). The Manager's map and running count have their own mutex.
package workspace
