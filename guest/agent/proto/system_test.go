package proto

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
)

// The whole-guest operations' tests. (This file initializes after
// shell_test.go, so the call it adds to FuzzClientAnswers' table comes
// after the shell calls and moves none of them.)

const testBootID = "5c1f3a8e-0b7d-4e2a-9f61-3d8c2b7a4e10"

func validRestored() RestoredArgs {
	return RestoredArgs{TimeNs: 1, Entropy: make([]byte, 64), Hostname: "ws-1", BootID: testBootID,
		MachineID: "3e9a6c1d0b7f48e2a5c4d3b2e1f0a9b8"}
}

// restoredCall is the index of Restored's call in clientCalls.
var restoredCall int

func init() {
	restoredCall = len(clientCalls)
	clientCalls = append(clientCalls, func(t *testing.T, c *Client) error {
		a := validRestored()
		res, err := c.Restored(context.Background(), a)
		if err == nil && res.BootID != a.BootID {
			t.Errorf("Restored returned boot id %q, asked for %q", res.BootID, a.BootID)
		}
		return err
	})
}

func TestRestoredCheck(t *testing.T) {
	ok := []func(a *RestoredArgs){
		func(a *RestoredArgs) {},
		func(a *RestoredArgs) { a.Hostname, a.BootID, a.MachineID = "", "", "" }, // all optional
		func(a *RestoredArgs) { a.Entropy = make([]byte, MinRestoredEntropy) },
		func(a *RestoredArgs) { a.Entropy = make([]byte, MaxRestoredEntropy) },
		func(a *RestoredArgs) { a.Hostname = strings.Repeat("a", 63) },
		func(a *RestoredArgs) { a.Hostname = "Ws-9-" },
		func(a *RestoredArgs) { a.BootID = "00000000-0000-0000-0000-000000000001" },
	}
	for i, change := range ok {
		a := validRestored()
		change(&a)
		if err := a.Check(); err != nil {
			t.Errorf("valid %d (%+v): %v", i, a, err)
		}
	}
	bad := map[string]func(a *RestoredArgs){
		"time_ns":    func(a *RestoredArgs) { a.TimeNs = 0 },
		"entropy":    func(a *RestoredArgs) { a.Entropy = make([]byte, MaxRestoredEntropy+1) },
		"hostname":   func(a *RestoredArgs) { a.Hostname = "ws.example" },
		"boot_id":    func(a *RestoredArgs) { a.BootID = "5c1f3a8e0b7d-4e2a-9f61-3d8c2b7a4e10-" },
		"machine_id": func(a *RestoredArgs) { a.MachineID = strings.ToUpper(a.MachineID) },
	}
	for field, change := range bad {
		a := validRestored()
		change(&a)
		err := a.Check()
		var pe *Error
		if !errors.As(err, &pe) || pe.Code != CodeInvalid || !strings.Contains(pe.Message, field) {
			t.Errorf("bad %s: %v, want an invalid error naming it", field, err)
		}
		// The Client refuses it before dialing.
		c := &Client{Dial: func(context.Context) (net.Conn, error) {
			t.Errorf("bad %s: the Client dialed", field)
			return nil, errors.New("no")
		}}
		if _, err := c.Restored(context.Background(), a); !errors.As(err, &pe) || pe.Code != CodeInvalid {
			t.Errorf("bad %s: Client.Restored: %v", field, err)
		}
	}
	// A long bad value is clipped in the message.
	a := validRestored()
	a.BootID = strings.Repeat("x", 1<<20)
	if err := a.Check(); err == nil || len(err.Error()) > 400 {
		t.Errorf("a 1 MiB boot id: %d-byte error", len(err.Error()))
	}
}

// The answer's boot id must be a UUID, and the one asked for.
func TestRestoredHostileAnswers(t *testing.T) {
	for name, tc := range map[string]struct {
		res  RestoredResult
		args func(a *RestoredArgs)
		ok   bool
	}{
		"as asked":          {res: RestoredResult{Reseeded: true, BootID: testBootID}, ok: true},
		"not reseeded":      {res: RestoredResult{BootID: testBootID}, ok: true},
		"none asked":        {res: RestoredResult{BootID: "11111111-2222-4333-8444-555555555555"}, args: func(a *RestoredArgs) { a.BootID = "" }, ok: true},
		"another id":        {res: RestoredResult{BootID: "11111111-2222-4333-8444-555555555555"}},
		"no id":             {res: RestoredResult{Reseeded: true}},
		"none asked, no id": {res: RestoredResult{}, args: func(a *RestoredArgs) { a.BootID = "" }},
		"huge id":           {res: RestoredResult{BootID: strings.Repeat("a", 512<<10)}},
	} {
		a := validRestored()
		if tc.args != nil {
			tc.args(&a)
		}
		res, err := scriptedAgent(jsonFrame(FrameResult, tc.res), false).Restored(context.Background(), a)
		switch {
		case tc.ok && (err != nil || res != tc.res):
			t.Errorf("%s: %+v, %v; want %+v", name, res, err, tc.res)
		case !tc.ok && (!IsProtocol(err) || res != RestoredResult{} || len(err.Error()) > 400):
			t.Errorf("%s: %+v, %.400v; want a short protocol error", name, res, err)
		}
	}
}

// An agent built before restored answers it as an unknown operation; the
// host is told to rebuild the environment, as a version mismatch says.
func TestRestoredOlderAgent(t *testing.T) {
	old := scriptedAgent(jsonFrame(FrameError, Error{Code: CodeInvalid, Message: `unknown operation "restored" (this agent speaks protocol 3)`}), false)
	_, err := old.Restored(context.Background(), validRestored())
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != CodeUnsupported || !strings.Contains(pe.Message, "restored operation") ||
		!strings.Contains(pe.Message, "pyro env build NAME") {
		t.Fatalf("restored to an older agent: %v", err)
	}
}

// Entropy is base64 on the wire and comes back intact.
func TestRestoredArgsRoundTrip(t *testing.T) {
	a := validRestored()
	for i := range a.Entropy {
		a.Entropy[i] = byte(i * 7)
	}
	req, err := NewRequest(OpRestored, a)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeArgs(OpRestored, &req)
	if err != nil || got.TimeNs != a.TimeNs || !bytes.Equal(got.Entropy, a.Entropy) || got.Hostname != a.Hostname ||
		got.BootID != a.BootID || got.MachineID != a.MachineID {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, a)
	}
}
