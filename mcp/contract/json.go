package contract

import (
	"encoding/json"
	"time"
)

// shellWaitJSON is ShellWait as JSON: the pattern as its source text.
type shellWaitJSON struct {
	Idle    time.Duration
	Pattern string `json:",omitempty"`
	Timeout time.Duration
}

// MarshalJSON encodes w with its Pattern as the expression's source, so
// that a wait travels (over the control socket) and compiles back to the
// same expression.
func (w ShellWait) MarshalJSON() ([]byte, error) {
	j := shellWaitJSON{Idle: w.Idle, Timeout: w.Timeout}
	if w.Pattern != nil {
		j.Pattern = w.Pattern.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON wrote; a pattern that is too
// long or does not compile is an *Error Invalid.
func (w *ShellWait) UnmarshalJSON(data []byte) error {
	var j shellWaitJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*w = ShellWait{Idle: j.Idle, Timeout: j.Timeout}
	if j.Pattern != "" {
		re, err := CompileShellPattern(j.Pattern)
		if err != nil {
			return err
		}
		w.Pattern = re
	}
	return nil
}
