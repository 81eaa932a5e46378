package mcp

import (
	"fmt"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
)

// ResultShapes returns the schemas of a tool's successful results, one per
// shape, stricter than its declared outputSchema (which admits errors too).
func ResultShapes(tool string) ([]*jsonschema.Schema, error) {
	for _, t := range toolSpecs() {
		if t.name == tool {
			return t.shapes()
		}
	}
	return nil, fmt.Errorf("no tool %s", tool)
}

// ErrorSchema is the schema of every error result's structured content.
func ErrorSchema() *jsonschema.Schema { return errorSchema() }

// SetHeartbeat sets how often a call with a progress token says it still
// runs, until the returned func restores it.
func SetHeartbeat(d time.Duration) (restore func()) {
	old := heartbeatEvery
	heartbeatEvery = d
	return func() { heartbeatEvery = old }
}

// ModeOverrides exposes a mode's description overrides and withheld
// arguments to the external tests.
func ModeOverrides(name string) (describe map[string]string, withhold map[string][]string, rawTools []string) {
	m, err := findMode(name)
	if err != nil {
		return nil, nil, nil
	}
	return m.describe, m.withhold, m.tools
}

// DefaultInstructions is the initialize text without a mode.
const DefaultInstructions = instructions
