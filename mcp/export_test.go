package mcp

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
