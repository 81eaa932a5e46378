package contract

import "testing"

type testFace struct{}

func (testFace) OpName(op Op) string       { return "<" + string(op) + ">" }
func (testFace) ArgName(arg string) string { return "--" + arg }

func TestWord(t *testing.T) {
	for in, want := range map[string]string{
		"":                                      "",
		"no markers":                            "no markers",
		"call {{stop}} then {{start}}":          "call <stop> then <start>",
		"ask for less ({{-mem_mib}})":           "ask for less (--mem_mib)",
		"{{exec.status}} with {{-kill}}":        "<exec.status> with --kill",
		"a template {{.Name}} stays":            "a template {{.Name}} stays",
		"unknown {{frobnicate}} stays":          "unknown {{frobnicate}} stays",
		"unclosed {{stop":                       "unclosed {{stop",
		"{{- trim}} stays":                      "{{- trim}} stays",
		"{{{{stop}}}}":                          "{{{{stop}}}}",
		"snapshot {{snapshot.delete}} {{diff}}": "snapshot <snapshot.delete> <diff>",
	} {
		if got := Word(in, testFace{}); got != want {
			t.Errorf("Word(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestErrorWorded(t *testing.T) {
	e := Conflict("{{reset}} is running").WithHint("wait, then {{status}}")
	w := e.Worded(testFace{})
	if w.Msg != "<reset> is running" || w.Hint != "wait, then <status>" || w.Code != CodeConflict {
		t.Errorf("worded: %+v", w)
	}
	if e.Msg != "{{reset}} is running" {
		t.Errorf("Worded changed its receiver: %q", e.Msg)
	}
}

func FuzzWord(f *testing.F) {
	f.Add("call {{stop}} or {{-mem_mib}} {{x")
	f.Fuzz(func(t *testing.T, s string) {
		out := Word(s, testFace{})
		if len(out) > 2*len(s)+16 {
			t.Fatalf("Word grew %d bytes to %d", len(s), len(out))
		}
	})
}
