package contract

import (
	"strings"
	"testing"
)

func TestValidateFork(t *testing.T) {
	req := ForkRequest{ID: "ws-1"}
	if err := ValidateFork(&req); err != nil || req.Count != 1 {
		t.Fatalf("count 0: %v, count %d; want 1", err, req.Count)
	}
	good := []ForkRequest{
		{Count: MaxForks},
		{Count: 2, Names: []string{"a", "b"}, Labels: map[string]string{"try": "2"}, Snapshot: "deps-in"},
		{Names: []string{"solo"}},
	}
	for _, r := range good {
		if err := ValidateFork(&r); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	for _, tc := range []struct {
		req  ForkRequest
		want string // in the message
	}{
		{ForkRequest{Count: -1}, "between 1 and 8"},
		{ForkRequest{Count: MaxForks + 1}, "between 1 and 8 (got 9)"},
		{ForkRequest{Count: 3, Names: []string{"a", "b"}}, "2 names given for 3 forks"},
		{ForkRequest{Names: []string{"a", "b"}}, "2 names given for 1 forks"}, // count 0 is 1, names or not
		{ForkRequest{Count: 3, Names: []string{"a", "b", "a"}}, `names[2] "a" repeats names[0]`},
		{ForkRequest{Count: 2, Names: []string{"a", "-b"}}, `names[1] "-b" may only use`},
		{ForkRequest{Count: 2, Names: []string{"", "b"}}, "names[0] must not be empty"},
		{ForkRequest{Names: []string{strings.Repeat("x", MaxNameLen+1)}}, "names[0] is 65 characters"},
		{ForkRequest{Labels: map[string]string{"-k": "v"}}, "label key"},
		{ForkRequest{Snapshot: "../up"}, `snapshot "../up" may only use`},
	} {
		r := tc.req
		err := ValidateFork(&r)
		if !IsCode(err, CodeInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want invalid with %q", tc.req, err, tc.want)
		}
	}
}
