package control

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/mcptest"
)

// FuzzRequest feeds request lines to the server's decoder and handlers
// (over a fake backend): nothing panics, every answer encodes, and the
// string escaping round-trips the line whatever its bytes.
func FuzzRequest(f *testing.F) {
	for _, s := range []string{
		`{"op":"hello"}`,
		`{"id":1,"op":"create","args":{"Name":"a","TTLSeconds":600,"Network":["pypi.org:443"]}}`,
		`{"op":"exec","args":{"ID":"ws-1","Command":"make","Stdin":"\udbff\udf41"}}`,
		`{"op":"exec.start","args":{"ID":"a","Argv":["x"],"TimeoutSeconds":7200}}`,
		`{"op":"exec.status","args":{"ID":"ws-1","Seq":2,"Wait":1000000000}}`,
		`{"op":"file.write","args":{"ID":"ws-1","Path":"x","Content":"AAEC","Mode":493}}`,
		`{"op":"update","args":{"ID":"ws-1","Name":"b","RemoveLabels":["k"]}}`,
		`{"op":"shell.open","args":{"ID":"ws-1","Wait":{"Pattern":"\\$ $","Idle":5}}}`,
		`{"op":"service.start","args":{"ID":"ws-1","Name":"web","Command":"x","Readiness":{"Kind":"http","URL":"http://a/"}}}`,
		`{"op":"secret.set","args":{"ID":"ws-1","Name":"t","Source":{"Value":"v"}}}`,
		`{"op":"network.grant","args":{"ID":"ws-1","Grants":["*.x.org:443"]}}`,
		`{"op":"fork","args":{"ID":"ws-1","Count":2,"Names":["a","b"],"Labels":{"k":"v"},"Snapshot":"s"}}`,
		"caf\xe9 \U0010FE00\U0010FF00",
	} {
		f.Add([]byte(s))
	}
	b := mcptest.New()
	s := &server{b: b, opts: Options{Hello: Hello{PID: 1}}, log: slog.New(slog.DiscardHandler)}
	f.Fuzz(func(t *testing.T, line []byte) {
		str := string(line)
		e := escapeString(str)
		if !utf8.ValidString(e) || unescapeString(e) != str {
			t.Fatalf("escaping %q gave %q, back %q", str, e, unescapeString(e))
		}
		var req request
		if err := unmarshal(line, &req, true); err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		res, err := s.call(ctx, req)
		if err != nil {
			if e, ok := contract.AsError(err); ok && e.Code == contract.CodeInternal && strings.Contains(e.Msg, "crashed") {
				t.Fatalf("%q: %v", line, err)
			}
			if _, err := marshal(response{Error: s.wireError(ctx, req.Op, err)}); err != nil {
				t.Fatalf("%q: the error does not encode: %v", line, err)
			}
			return
		}
		if _, err := marshal(res); err != nil {
			t.Fatalf("%q: the result does not encode: %v", line, err)
		}
	})
}
