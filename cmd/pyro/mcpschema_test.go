package main

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// outputSchemas checks tool results against the outputSchema each tool
// of a session declares, as a client that validates structuredContent
// does: success and error results alike must pass.
type outputSchemas struct {
	s *sdk.ClientSession

	mu sync.Mutex // guards m
	// m holds the resolved schemas by tool, read at the first check.
	m map[string]*jsonschema.Resolved
}

func (o *outputSchemas) check(t testing.TB, tool string, res *sdk.CallToolResult) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		list, err := o.s.ListTools(context.Background(), nil)
		if err != nil {
			t.Fatalf("tools/list: %v", err)
		}
		o.m = map[string]*jsonschema.Resolved{}
		for _, tl := range list.Tools {
			data, _ := json.Marshal(tl.OutputSchema)
			var s jsonschema.Schema
			if err := json.Unmarshal(data, &s); err != nil {
				t.Fatalf("%s: outputSchema: %v", tl.Name, err)
			}
			r, err := s.Resolve(nil)
			if err != nil {
				t.Fatalf("%s: outputSchema: %v", tl.Name, err)
			}
			o.m[tl.Name] = r
		}
	}
	r, ok := o.m[tool]
	if !ok {
		t.Fatalf("%s declares no outputSchema", tool)
	}
	if res.StructuredContent == nil {
		if !res.IsError { // the SDK's own argument errors come as text only
			t.Fatalf("%s: no structuredContent", tool)
		}
		return
	}
	data, _ := json.Marshal(res.StructuredContent)
	var v any
	json.Unmarshal(data, &v)
	if err := r.Validate(v); err != nil {
		t.Errorf("%s: result does not validate against its outputSchema: %v\n%s", tool, err, data)
	}
}
