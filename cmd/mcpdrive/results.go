package main

// The shapes of pyro's tool results, as far as mcpdrive reads them. They
// are mcpdrive's own, decoded from each result's structuredContent: fields
// pyro adds later are ignored, and a field renamed or dropped reads as its
// zero value, which the scenarios' checks then catch.

type workspace struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	State   string `json:"state"`
	Env     string `json:"env"`
	MemMiB  int    `json:"mem_mib"`
	DiskMiB int    `json:"disk_mib"`
	Seed    *struct {
		Kind  string `json:"kind"`
		Files int    `json:"files"`
		Bytes int64  `json:"bytes"`
	} `json:"seed"`
}

// workspaceResult: workspace_create, workspace_status, workspace_start.
type workspaceResult struct {
	Workspace workspace `json:"workspace"`
}

type deleteResult struct {
	Deleted string `json:"deleted"`
}

type execResult struct {
	ID         string `json:"id"`
	ExitCode   int    `json:"exit_code"`
	Signal     string `json:"signal"`
	TimedOut   bool   `json:"timed_out"`
	DurationMs int64  `json:"duration_ms"`
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	Limited    string `json:"limited"`
}

type fileReadResult struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	EOF     bool   `json:"eof"`
	Content string `json:"content"`
}

type fileWriteResult struct {
	Path    string `json:"path"`
	Bytes   int64  `json:"bytes"`
	Created bool   `json:"created"`
}

type fileEntry struct {
	Path string `json:"path"`
	Type string `json:"type"`
	Size *int64 `json:"size"`
}

type fileListResult struct {
	Path    string      `json:"path"`
	Entries []fileEntry `json:"entries"`
}

type patchResult struct {
	Applied bool `json:"applied"`
	Files   []struct {
		Path      string `json:"path"`
		Op        string `json:"op"`
		OK        bool   `json:"ok"`
		Additions int    `json:"additions"`
		Deletions int    `json:"deletions"`
		Error     string `json:"error"`
	} `json:"files"`
}

type change struct {
	Path      string `json:"path"`
	Status    string `json:"status"`
	Additions int    `json:"additions"`
	Deletions int    `json:"deletions"`
}

type diffStats struct {
	Files     int `json:"files"`
	Additions int `json:"additions"`
	Deletions int `json:"deletions"`
}

type diffResult struct {
	Stats       diffStats `json:"stats"`
	Files       []change  `json:"files"`
	FilesTotal  int       `json:"files_total"`
	Patch       string    `json:"patch"`
	PatchInline bool      `json:"patch_inline"`
}

type exportResult struct {
	HostPath string `json:"host_path"`
	Format   string `json:"format"`
	Files    int    `json:"files"`
	Bytes    int64  `json:"bytes"`
}

type snapshotResult struct {
	ID       string `json:"id"`
	Snapshot struct {
		Name string `json:"name"`
		Seq  int64  `json:"seq"`
	} `json:"snapshot"`
}

type resetResult struct {
	Workspace  workspace `json:"workspace"`
	ResetTo    string    `json:"reset_to"`
	DurationMs int64     `json:"duration_ms"`
}

type summaryCommand struct {
	Kind     string `json:"kind"`
	Command  string `json:"command"`
	ExitCode *int   `json:"exit_code"`
}

type summaryResult struct {
	Workspace struct {
		ID string `json:"id"`
	} `json:"workspace"`
	CommandsTotal  int              `json:"commands_total"`
	CommandsFailed int              `json:"commands_failed"`
	Commands       []summaryCommand `json:"commands"`
	Stats          diffStats        `json:"stats"`
	Changes        []change         `json:"changes"`
	Snapshots      []struct {
		Name string `json:"name"`
	} `json:"snapshots"`
	Exports []exportResult `json:"exports"`
}

// Arguments of the tools, as the wire names them.

type seedArg struct {
	Kind string `json:"kind,omitempty"`
	Path string `json:"path"`
}

type createArgs struct {
	Env        string            `json:"env,omitempty"`
	Name       string            `json:"name,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Seed       *seedArg          `json:"seed,omitempty"`
	TTLSeconds int               `json:"ttl_seconds,omitempty"`
	MemMiB     int               `json:"mem_mib,omitempty"`
	DiskMiB    int               `json:"disk_mib,omitempty"`
}

type execArgs struct {
	ID             string            `json:"id"`
	Command        string            `json:"command"`
	EnvVars        map[string]string `json:"env_vars,omitempty"`
	TimeoutSeconds int               `json:"timeout_seconds,omitempty"`
}

type idArgs struct {
	ID string `json:"id"`
}

type pathArgs struct {
	ID   string `json:"id"`
	Path string `json:"path,omitempty"`
}

type fileWriteArgs struct {
	ID      string `json:"id"`
	Path    string `json:"path"`
	Content string `json:"content"`
}

type patchArgs struct {
	ID    string `json:"id"`
	Patch string `json:"patch"`
}

type exportArgs struct {
	ID        string `json:"id"`
	GuestPath string `json:"guest_path,omitempty"`
	HostPath  string `json:"host_path"`
	Format    string `json:"format,omitempty"`
}

type snapshotArgs struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type resetArgs struct {
	ID       string `json:"id"`
	Snapshot string `json:"snapshot,omitempty"`
}
