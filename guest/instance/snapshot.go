package instance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/vmm"
)

// Snapshot takes a memory snapshot of the running VM into dir (which must
// exist and be empty): it pauses the guest, calls atPause while nothing in
// the guest runs or writes its disk (the caller freezes the disk layer
// that goes with the snapshot there), writes the machine's state and RAM,
// and lets the guest run on. note is kept in the snapshot. An error from
// atPause aborts the snapshot; the guest runs on either way.
func (v *VM) Snapshot(dir, note string, atPause func() error) (vmm.SnapshotStats, error) {
	if err := v.m.Pause(); err != nil {
		if errors.Is(err, vmm.ErrNotRunning) {
			return vmm.SnapshotStats{}, v.stoppedError("")
		}
		return vmm.SnapshotStats{}, err
	}
	var stats vmm.SnapshotStats
	err := func() error {
		if atPause != nil {
			if err := atPause(); err != nil {
				return err
			}
		}
		var err error
		stats, err = v.m.Snapshot(dir, note)
		return err
	}()
	if rerr := v.m.Resume(); rerr != nil && err == nil {
		err = fmt.Errorf("resuming the guest after its snapshot: %w", rerr)
	}
	return stats, err
}

// Restore starts cfg's VM from the memory snapshot in dir instead of
// booting it, and returns once its agent answers and has taken this VM's
// identity. cfg.Disk must read exactly as the disk did when the snapshot
// was taken (a new layer on the layer frozen with it), and cfg.Net must be
// set if and only if the snapshot's VM had a NIC. cfg.VCPUs and
// cfg.MemMiB may be zero (the snapshot's are used) or must match it.
//
// The restored guest resumes with its processes as they were. Its vsock
// connections are reset (the host side of them is gone), its wall clock is
// set, its random number generator gets fresh entropy and is reseeded, and
// its hostname, boot ID and machine ID become this VM's, so that siblings
// restored from one snapshot share none of them.
func Restore(ctx context.Context, cfg Config, dir string) (_ *VM, err error) {
	// One restore at a time in this process, until its agent has
	// answered: restored guests resumed side by side in the nested
	// harness lost their FPU state (the guest kernel found a bad XSAVE
	// image on its first context switch) while one after another they
	// did not. A restore takes milliseconds on hardware, so forks pay
	// little for the order.
	restoreMu.Lock()
	defer restoreMu.Unlock()
	begin := time.Now()
	vcpus, mem := cfg.VCPUs, cfg.MemMiB
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	d, err := newDevices(cfg)
	if err != nil {
		return nil, err
	}
	m, err := vmm.Restore(vmm.Config{
		VCPUs:     vcpus,
		MemMiB:    mem,
		Console:   cfg.Console,
		KVMDevice: cfg.KVMDevice,
		Devices:   d.list,
		Logger:    cfg.Logger,
	}, dir)
	if err != nil {
		d.vs.Close()
		return nil, err
	}
	built := time.Since(begin)
	// The agent's first call is the one that gives it its identity:
	// the guest's first moments after a restore are its slowest (each
	// page it touches again costs an exit), and a ping first would add
	// a round trip to them.
	id := newIdentity(cfg.Hostname)
	v, err := launch(ctx, cfg, m, d, id.give)
	if err != nil {
		return nil, err
	}
	v.Ready = time.Since(begin)
	v.log.Info("VM restored", "snapshot", dir, "machine", built, "agent", v.Ready-built, "transport_reset", v.settled, "tries", v.tries)
	return v, nil
}

// CanRewind reports whether Rewind can take the VM back to the memory
// snapshot in dir: the VM runs on that snapshot's memory image (it took
// that snapshot last, or was restored or rewound from it last).
func (v *VM) CanRewind(dir string) bool { return v.m.CanRewind(dir) }

// Rewind takes the running VM back to the memory snapshot in dir in
// place, and returns once its agent answers and has taken a new identity,
// as a Restore of dir does; it is faster than one because the guest's RAM
// stays mapped (vmm.Machine.Rewind). The VM pauses, atPause runs while
// nothing in the guest runs or touches its disk (the caller checks out
// the disk layer taken with the snapshot there: the disk must read as it
// did then), the machine is rewound, and the guest resumes. Streams to
// the old guest fail.
//
// On error the VM may be part rewound, or on a changed disk: the caller
// closes it (and restores or boots anew).
func (v *VM) Rewind(ctx context.Context, dir string, atPause func() error) error {
	restoreMu.Lock() // see Restore
	defer restoreMu.Unlock()
	begin := time.Now()
	if err := v.m.Pause(); err != nil {
		if errors.Is(err, vmm.ErrNotRunning) {
			return v.stoppedError("")
		}
		return err
	}
	if atPause != nil {
		if err := atPause(); err != nil {
			return err
		}
	}
	st, err := v.m.Rewind(dir)
	if err != nil {
		return err
	}
	if err := v.m.Resume(); err != nil {
		return fmt.Errorf("resuming the rewound guest: %w", err)
	}
	rewound := time.Since(begin)
	timeout := v.readyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	readyCtx, stop := context.WithTimeout(ctx, timeout)
	defer stop()
	v.restored, v.tries = true, 0
	v.awaitTransportReset(readyCtx)
	if err := v.waitReady(readyCtx, newIdentity(v.hostname).give); err != nil {
		return err
	}
	v.Ready = time.Since(begin)
	v.log.Info("VM rewound", "snapshot", dir, "machine", rewound, "pages_copied", st.Memory.Copied,
		"agent", v.Ready-rewound, "transport_reset", v.settled, "tries", v.tries)
	return nil
}

// identity is what a restored guest takes on: the time (set on each
// try), fresh entropy, and this VM's own host name, boot ID and machine
// ID.
type identity struct {
	args proto.RestoredArgs
}

func newIdentity(hostname string) *identity {
	if hostname == "" {
		hostname = env.Hostname
	}
	id := &identity{args: proto.RestoredArgs{
		Entropy:   make([]byte, 64),
		Hostname:  hostname,
		BootID:    newUUID(),
		MachineID: randomHex(16),
	}}
	rand.Read(id.args.Entropy)
	return id
}

// give hands the identity to v's agent. Giving it twice (a retry whose
// first answer was lost) leaves the guest as giving it once.
func (id *identity) give(ctx context.Context, v *VM) error {
	id.args.TimeNs = time.Now().UnixNano()
	res, err := v.Agent.Restored(ctx, id.args)
	if err != nil {
		return fmt.Errorf("giving the restored guest its identity: %w", err)
	}
	if !res.Reseeded {
		v.log.Warn("the restored guest's kernel could not reseed its random number generator at once; it mixed in fresh entropy only")
	}
	return nil
}

// restoreMu serialises Restore (see there).
var restoreMu sync.Mutex

// newUUID returns a random (version 4) UUID in its 36-character form.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
