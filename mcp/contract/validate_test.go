package contract

import (
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"a", "fix-123", "A.b_c-9", strings.Repeat("x", 64)} {
		if err := ValidateName("name", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-x", ".x", "a b", "a/b", "é", strings.Repeat("x", 65)} {
		err := ValidateName("name", bad)
		if !IsCode(err, CodeInvalid) {
			t.Errorf("%q: got %v, want invalid", bad, err)
		}
	}
}

func TestValidateLabels(t *testing.T) {
	if err := ValidateLabels(map[string]string{"task": "fix 123", "team/app": "", "a": "日本"}); err != nil {
		t.Error(err)
	}
	many := map[string]string{}
	for i := range MaxLabels + 1 {
		many[strings.Repeat("k", i+1)] = "v"
	}
	for name, l := range map[string]map[string]string{
		"too many":  many,
		"empty key": {"": "v"},
		"bad key":   {"a b": "v"},
		"key end":   {"a-": "v"},
		"long key":  {strings.Repeat("k", 64): "v"},
		"long val":  {"k": strings.Repeat("v", 257)},
		"control":   {"k": "a\nb"},
	} {
		if err := ValidateLabels(l); !IsCode(err, CodeInvalid) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

func TestValidateCommand(t *testing.T) {
	c := CommandSpec{Command: "make test"}
	if err := ValidateCommand(&c); err != nil {
		t.Fatal(err)
	}
	if c.Cwd != DefaultWorkdir || c.Timeout != DefaultTimeout {
		t.Errorf("defaults not applied: %+v", c)
	}
	for name, tc := range map[string]struct {
		c    CommandSpec
		want string
	}{
		"none":       {CommandSpec{}, "pass command"},
		"blank":      {CommandSpec{Command: "  "}, "blank"},
		"both":       {CommandSpec{Command: "ls", Argv: []string{"ls"}}, "exactly one"},
		"empty argv": {CommandSpec{Argv: []string{""}}, "argv[0]"},
		"timeout 0-": {CommandSpec{Command: "ls", Timeout: -1}, "timeout_seconds"},
		"timeout hi": {CommandSpec{Command: "ls", Timeout: 3601}, "between 1 and 3600"},
		"env key":    {CommandSpec{Command: "ls", EnvVars: map[string]string{"1A": "x"}}, "env_vars key"},
		"nul":        {CommandSpec{Command: "ls\x00"}, "NUL"},
		"stdin":      {CommandSpec{Command: "cat", Stdin: strings.Repeat("x", MaxStdinBytes+1)}, "stdin"},
	} {
		err := ValidateCommand(&tc.c)
		if !IsCode(err, CodeInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want invalid mentioning %q", name, err, tc.want)
		}
	}
}

func TestSeedSpec(t *testing.T) {
	for _, tc := range []struct {
		in   *SeedInput
		want SeedSpec
	}{
		{nil, SeedSpec{Kind: SeedNone}},
		{&SeedInput{Path: "/src"}, SeedSpec{Kind: SeedDir, Path: "/src"}},
		{&SeedInput{Path: "x.TGZ"}, SeedSpec{Kind: SeedArchive, Path: "x.TGZ"}},
		{&SeedInput{Kind: "git"}, SeedSpec{Kind: SeedGit}},
	} {
		got, err := ParseSeed(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSeed(%+v) = %+v, %v", tc.in, got, err)
		}
	}
	for _, bad := range []*SeedInput{{Kind: "dir"}, {Kind: "ftp", Path: "x"}, {Kind: "none", Path: "x"}} {
		if _, err := ParseSeed(bad); !IsCode(err, CodeInvalid) {
			t.Errorf("ParseSeed(%+v): %v", bad, err)
		}
	}
}

func TestErrorHelpers(t *testing.T) {
	err := error(NotFound(ResourceSnapshot, "s1").WithHint("h"))
	e, ok := AsError(err)
	if !ok || e.Code != CodeNotFound || e.Hint != "h" || e.Resource != ResourceSnapshot {
		t.Fatalf("%+v", e)
	}
	wrapped := Internal("boot", err)
	if !IsCode(wrapped, CodeInternal) || wrapped.Unwrap() != err {
		t.Fatal("Internal does not wrap")
	}
	if !strings.Contains(wrapped.Error(), "s1") {
		t.Fatal(wrapped.Error())
	}
}
