package contract

import (
	"encoding/json"
	"regexp"
	"testing"
	"time"
)

func TestValidateCreateFillsDefaults(t *testing.T) {
	req := CreateRequest{Seed: SeedSpec{Path: "/src/x.tgz"}, Network: []string{"pypi.org:443", "pypi.org:443"}}
	if err := ValidateCreate(&req); err != nil {
		t.Fatal(err)
	}
	if req.TTLSeconds != DefaultTTL || req.Seed.Kind != SeedArchive || len(req.Network) != 1 {
		t.Fatalf("defaults not filled: %+v", req)
	}
	bad := []CreateRequest{
		{Name: "-x"}, {TTLSeconds: 1}, {VCPUs: -1}, {DiskMiB: -1}, {Env: "a\nb"},
		{Seed: SeedSpec{Kind: "svn"}}, {Network: []string{"nope"}},
		{Secrets: map[string]SecretSource{"k": {}}},
	}
	for _, r := range bad {
		if err := ValidateCreate(&r); !IsCode(err, CodeInvalid) {
			t.Errorf("%+v: got %v, want invalid", r, err)
		}
	}
}

func TestValidateExecTimeouts(t *testing.T) {
	fg := ExecRequest{Command: "true"}
	if err := ValidateExec(&fg, false); err != nil || fg.TimeoutSeconds != DefaultTimeout || fg.Cwd != DefaultWorkdir {
		t.Fatalf("foreground: %v %+v", err, fg)
	}
	bg := ExecRequest{Command: "true", TimeoutSeconds: 7200}
	if err := ValidateExec(&bg, true); err != nil || bg.TimeoutSeconds != 7200 {
		t.Fatalf("background: %v %+v", err, bg)
	}
	fg = ExecRequest{Command: "true", TimeoutSeconds: 7200}
	if err := ValidateExec(&fg, false); !IsCode(err, CodeInvalid) {
		t.Fatalf("a foreground command past the limit: %v", err)
	}
	bg = ExecRequest{Command: "true", TimeoutSeconds: MaxBackgroundTimeoutSeconds + 1}
	if err := ValidateExec(&bg, true); !IsCode(err, CodeInvalid) {
		t.Fatalf("a background command past the limit: %v", err)
	}
}

func TestShellWaitJSON(t *testing.T) {
	w := ShellWait{Idle: 250 * time.Millisecond, Pattern: regexp.MustCompile(`\$ $`), Timeout: 3 * time.Second}
	data, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	var back ShellWait
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Idle != w.Idle || back.Timeout != w.Timeout || back.Pattern.String() != w.Pattern.String() {
		t.Fatalf("round trip: %s -> %+v", data, back)
	}
	if err := json.Unmarshal([]byte(`{"Pattern":"("}`), &back); !IsCode(err, CodeInvalid) {
		t.Fatalf("a bad pattern: %v", err)
	}
	if err := ValidateShellWait(ShellWait{Timeout: MaxShellTimeout + 1}); !IsCode(err, CodeInvalid) {
		t.Fatalf("a wait past the limit: %v", err)
	}
}
