package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Resource limits for user commands (cgroup v2).
//
// The agent (PID 1) lives in cgroupRoot/pyro-agent; every command an exec
// starts is cloned straight into its own child of cgroupRoot/pyro-user
// (CLONE_INTO_CGROUP: no moment outside it), so what the command and its
// descendants do, background processes included, is bounded together:
//
//	/sys/fs/cgroup/
//	  pyro-agent/   the agent; cpu.weight agentCPUWeight, no limits
//	  pyro-user/    pids.max userPidsMax, memory.max (RAM less the reserve),
//	                cpu.weight userCPUWeight
//	    exec-1/     one exec's processes; memory.oom.group 1, pids.max as
//	    exec-2/     pyro-user's (so the limit is counted where it is hit)
//
// A fork bomb runs into pids.max, a memory hog into memory.max (the OOM
// killer then kills that exec's whole cgroup, never the agent, which also
// has oom_score_adj agentOOMScoreAdj), and a CPU hog gets a small share next to the
// agent, so the agent keeps answering. Each exec reports what its cgroup
// ran into, and kills, when it starts, what earlier execs left running
// that hit a limit (a fork bomb outlives the shell that started it).
//
// This guards against runaway and careless code, not against a guest root
// that means to escape: user commands run as root and can write the
// cgroup files. The host side is the boundary against a hostile guest.

const (
	cgroupRoot  = "/sys/fs/cgroup"
	agentCgroup = "pyro-agent"
	userCgroup  = "pyro-user"
	execPrefix  = "exec-"

	// userPidsMax bounds the processes and threads of all user commands
	// together: far above what builds and test suites use (a JVM has a
	// few hundred threads), far below the kernel's pid_max (32768 in a
	// small VM), and low enough that a fork bomb's processes fit in
	// memory, so it hits this limit rather than the OOM killer.
	userPidsMax = 4096

	// The memory reserved for the kernel and the agent, outside
	// pyro-user's memory.max: an eighth of the VM's RAM, at least
	// minMemReserve (the agent's Go heap and stacks, the kernel's slabs
	// and page tables of a small VM), at most maxMemReserve (more is
	// waste in a big VM).
	minMemReserve = 48 << 20
	maxMemReserve = 256 << 20

	// CPU weights (1..10000, 100 is the kernel's default): the agent
	// wins ten to one against all user commands together.
	agentCPUWeight = 1000
	userCPUWeight  = 100

	// agentOOMScoreAdj keeps the agent last in the guest kernel's OOM
	// victim order without making it, and so every command it clones
	// until unprotect resets their score, immune: -1000 would exempt
	// such a process from its exec's group kill too.
	agentOOMScoreAdj = -999

	// leftoverKillWait bounds the wait for killed leftovers to exit
	// before a new exec starts (cgroup.kill is asynchronous); a few
	// thousand processes exit in well under a second.
	leftoverKillWait = 3 * time.Second
)

// userMemMax is pyro-user's memory.max for a VM with memTotal bytes.
func userMemMax(memTotal int64) int64 {
	reserve := min(max(memTotal/8, minMemReserve), maxMemReserve)
	return max(memTotal-reserve, memTotal/2)
}

// cgroups manages pyro-user's exec cgroups. A nil *cgroups (outside a
// guest, or a kernel without cgroup v2) makes every method a no-op.
type cgroups struct {
	user string // the pyro-user directory
	logf func(format string, args ...any)

	mu       sync.Mutex
	next     int
	active   map[string]bool     // exec cgroups whose exec is being served
	reported map[string][2]int64 // pids.events max and oom_kill already reported, by cgroup
}

// setupCgroups mounts cgroup2 at root if needed, enables the pids, memory
// and cpu controllers, moves the agent into pyro-agent and creates
// pyro-user with its limits. A controller the kernel lacks is a warning:
// the others still apply. Without cgroup v2 at all it returns an error,
// and execs run unconfined as before.
func setupCgroups(root string, memTotal int64, logf func(string, ...any)) (*cgroups, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(root, &sfs); err != nil || sfs.Type != unix.CGROUP2_SUPER_MAGIC {
		if err := mount("cgroup2", root, "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return nil, fmt.Errorf("%w (the kernel needs CONFIG_CGROUPS; user commands run without limits)", err)
		}
	}
	for _, c := range []string{"pids", "memory", "cpu"} {
		if err := writeCgroup(root, "cgroup.subtree_control", "+"+c); err != nil {
			logf("pyro-agent: warning: enabling the %s controller: %v (user commands run without that limit)", c, err)
		}
	}
	agent := filepath.Join(root, agentCgroup)
	if err := os.Mkdir(agent, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	if err := writeCgroup(agent, "cgroup.procs", strconv.Itoa(os.Getpid())); err != nil {
		return nil, fmt.Errorf("moving the agent into %s: %w", agent, err)
	}
	writeCgroup(agent, "cpu.weight", strconv.Itoa(agentCPUWeight))
	user := filepath.Join(root, userCgroup)
	if err := os.Mkdir(user, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	for _, kv := range [][2]string{
		{"pids.max", strconv.Itoa(userPidsMax)},
		{"memory.max", strconv.FormatInt(userMemMax(memTotal), 10)},
		{"memory.swap.max", "0"},
		{"cpu.weight", strconv.Itoa(userCPUWeight)},
	} {
		if err := writeCgroup(user, kv[0], kv[1]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			logf("pyro-agent: warning: setting %s/%s to %s: %v", user, kv[0], kv[1], err)
		}
	}
	for _, c := range []string{"pids", "memory", "cpu"} {
		writeCgroup(user, "cgroup.subtree_control", "+"+c) // missing ones were reported above
	}
	// Last: only execs in a cgroup of ours get their score reset (see
	// unprotect), so the agent is protected only once they will be.
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(agentOOMScoreAdj)), 0); err != nil {
		logf("pyro-agent: warning: protecting the agent from the OOM killer: %v", err)
	}
	return &cgroups{user: user, logf: logf, active: map[string]bool{}, reported: map[string][2]int64{}}, nil
}

// memTotal reads MemTotal from a /proc/meminfo.
func memTotal(meminfo []byte) (int64, error) {
	for _, line := range strings.Split(string(meminfo), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("MemTotal %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no MemTotal line in /proc/meminfo")
}

func writeCgroup(dir, file, value string) error {
	f, err := os.OpenFile(filepath.Join(dir, file), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// cgroupKeys reads a flat keyed cgroup file ("key value" lines) into a
// map; a missing file reads as empty.
func cgroupKeys(dir, file string) map[string]int64 {
	m := map[string]int64{}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return m
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); ok && err == nil {
			m[k] = n
		}
	}
	return m
}

// procs counts the processes in a cgroup.
func procs(dir string) int {
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	return bytes.Count(b, []byte{'\n'})
}

// limitsHit reads what a cgroup ran into: forks refused by pids.max and
// processes the OOM killer killed.
func limitsHit(dir string) (pidsLimited, oomKills int64) {
	return cgroupKeys(dir, "pids.events")["max"], cgroupKeys(dir, "memory.events")["oom_kill"]
}

// execCgroup is one exec's cgroup.
type execCgroup struct {
	cg   *cgroups
	name string
	dir  string
	fd   *os.File // the directory, for CLONE_INTO_CGROUP
	over bool     // done ran
}

// leftovers says what earlier execs left running when a new one started.
type leftovers struct {
	Running int // processes still running, of execs that hit no limit
	Killed  int // processes killed because their exec had hit a limit
	// What the leftovers ran into since their exec returned.
	PidsLimited, OOMKills int64
}

// sweep looks at the cgroups of finished execs: counts what they ran
// into since last seen, removes the empty ones, kills those that hit a
// limit (a fork bomb whose shell is gone), or all of them with all set,
// and counts the processes of the rest.
func (c *cgroups) sweep(all bool) leftovers {
	var l leftovers
	if c == nil {
		return l
	}
	ents, _ := os.ReadDir(c.user)
	var killed []string
	for _, e := range ents {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, execPrefix) {
			continue
		}
		c.mu.Lock()
		active, seen := c.active[name], c.reported[name]
		c.mu.Unlock()
		if active {
			continue
		}
		dir := filepath.Join(c.user, name)
		p, o := limitsHit(dir)
		l.PidsLimited += max(p-seen[0], 0)
		l.OOMKills += max(o-seen[1], 0)
		c.mu.Lock()
		c.reported[name] = [2]int64{p, o}
		c.mu.Unlock()
		if unix.Rmdir(dir) == nil {
			c.forget(name)
			continue // empty
		}
		n := procs(dir)
		if p > 0 || o > 0 || all {
			if err := writeCgroup(dir, "cgroup.kill", "1"); err != nil {
				c.logf("pyro-agent: killing the leftovers in %s: %v", dir, err)
			}
			l.Killed += n
			killed = append(killed, name)
			continue
		}
		l.Running += n
	}
	deadline := time.Now().Add(leftoverKillWait)
	for _, name := range killed {
		dir := filepath.Join(c.user, name)
		err := unix.Rmdir(dir)
		for err == unix.EBUSY && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // cgroup.kill only sends the signals
			err = unix.Rmdir(dir)
		}
		if err == nil {
			c.forget(name)
		}
	}
	return l
}

func (c *cgroups) forget(name string) {
	c.mu.Lock()
	delete(c.reported, name)
	c.mu.Unlock()
}

// start creates the cgroup of a new exec.
func (c *cgroups) start() (*execCgroup, error) {
	if c == nil {
		return nil, nil
	}
	c.mu.Lock()
	c.next++
	name := execPrefix + strconv.Itoa(c.next)
	c.active[name] = true
	c.mu.Unlock()
	x := &execCgroup{cg: c, name: name, dir: filepath.Join(c.user, name)}
	if err := os.Mkdir(x.dir, 0o755); err != nil {
		x.done()
		return nil, fmt.Errorf("creating the command's cgroup: %w", err)
	}
	// The parent's limit here too, so pids.events counts a refused fork
	// in this cgroup on every kernel (newer ones count it where the
	// limit is hit), and the OOM killer takes the whole exec.
	if b, err := os.ReadFile(filepath.Join(c.user, "pids.max")); err == nil {
		writeCgroup(x.dir, "pids.max", strings.TrimSpace(string(b)))
	}
	writeCgroup(x.dir, "memory.oom.group", "1")
	fd, err := os.OpenFile(x.dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		x.done()
		return nil, fmt.Errorf("opening the command's cgroup: %w", err)
	}
	x.fd = fd
	return x, nil
}

// kill kills every process of the exec, wherever its process group.
func (x *execCgroup) kill() {
	if x != nil {
		writeCgroup(x.dir, "cgroup.kill", "1")
	}
}

// unprotect gives the exec's processes the default OOM score: they
// inherit the agent's agentOOMScoreAdj across clone, which would make
// the guest kernel's OOM killer pass them over. The command's first
// process is set right after it starts; anything it forked before that is
// found through cgroup.procs, and a process forked in between keeps the
// low score, but can still be killed: the limit's group kill
// (memory.oom.group) spares only -1000.
func (x *execCgroup) unprotect(pid int) {
	if x == nil {
		return
	}
	set := func(pid string) { os.WriteFile("/proc/"+pid+"/oom_score_adj", []byte("0"), 0) }
	set(strconv.Itoa(pid))
	b, _ := os.ReadFile(filepath.Join(x.dir, "cgroup.procs"))
	for _, p := range strings.Fields(string(b)) {
		if p != strconv.Itoa(pid) {
			set(p)
		}
	}
}

// done collects what the exec ran into and how many of its processes
// are still running, and removes the cgroup if it is empty. The cgroup
// is then a leftover for the next exec's sweep.
func (x *execCgroup) done() (pidsLimited, oomKills int64, running int) {
	if x == nil || x.over {
		return 0, 0, 0
	}
	x.over = true
	if x.fd != nil {
		x.fd.Close()
	}
	pidsLimited, oomKills = limitsHit(x.dir)
	gone := unix.Rmdir(x.dir) == nil
	if !gone {
		running = procs(x.dir)
	}
	x.cg.mu.Lock()
	delete(x.cg.active, x.name)
	if !gone {
		x.cg.reported[x.name] = [2]int64{pidsLimited, oomKills}
	}
	x.cg.mu.Unlock()
	return pidsLimited, oomKills, running
}
