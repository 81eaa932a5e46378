package agent

import (
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
)

// Waiting for exec'd processes, and reaping orphans as PID 1.
//
// PID 1 inherits every orphan in the guest and must reap them, or they
// stay zombies forever. Reaping means wait4(-1), which would also steal
// the exit status of a process os/exec is waiting for (its Wait would fail
// with ECHILD). So in PID 1 mode one loop owns every wait: on each SIGCHLD
// it calls wait4(-1, WNOHANG) until nothing is left, and hands a status
// whose pid the exec layer registered to that exec through a channel;
// other statuses are orphans and are dropped. The exec layer never calls
// cmd.Wait: it starts the process and registers its pid while holding the
// reaper's lock, which the loop also holds while it reaps, so a process
// that exits at once cannot be reaped before its pid is registered.
//
// Outside PID 1 (tests), there is no loop: each exec waits for its own
// process with os.Process.Wait, and orphans are someone else's.
type reaper struct {
	mu      sync.Mutex
	waiting map[int]chan syscall.WaitStatus
	orphans int // reaped without an owner, for diagnostics
}

// startReaper starts the PID 1 reaping loop.
func startReaper() *reaper {
	r := &reaper{waiting: map[int]chan syscall.WaitStatus{}}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGCHLD)
	go func() {
		r.reap() // children that exited before Notify
		for range sig {
			r.reap()
		}
	}()
	return r
}

// reap collects every exited child. Signals coalesce, so it loops until
// wait4 finds none.
func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if ch, ok := r.waiting[pid]; ok {
			delete(r.waiting, pid)
			ch <- ws
		} else {
			r.orphans++
		}
	}
}

// start starts cmd and returns its pid and a channel that yields its
// wait status once. With r nil it waits with os.Process.Wait.
func (r *reaper) start(cmd *exec.Cmd) (int, <-chan syscall.WaitStatus, error) {
	ch := make(chan syscall.WaitStatus, 1)
	if r == nil {
		if err := cmd.Start(); err != nil {
			return 0, nil, err
		}
		go func() {
			st, err := cmd.Process.Wait()
			if err != nil {
				// Only if something else reaped our child: report exit 255.
				ch <- syscall.WaitStatus(255 << 8)
				return
			}
			ch <- st.Sys().(syscall.WaitStatus)
		}()
		return cmd.Process.Pid, ch, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	pid := cmd.Process.Pid
	r.waiting[pid] = ch
	cmd.Process.Release() // never Wait on it: the loop reaps it (Release sets Pid to -1)
	return pid, ch, nil
}
