package contract

import (
	"context"
	"testing"
)

func TestProgress(t *testing.T) {
	// No reporter: a no-op, not a panic.
	Progress(context.Background(), "booting", 0, 0)
	if WithProgress(context.Background(), nil) != context.Background() {
		t.Error("WithProgress(nil) changed the context")
	}
	var got []string
	ctx := WithProgress(context.Background(), func(stage string, done, total float64) {
		got = append(got, stage)
		if stage == "seeding" && (done != 3 || total != 10) {
			t.Errorf("seeding: %v/%v", done, total)
		}
	})
	Progress(ctx, "booting", 0, 0)
	Progress(ctx, "seeding", 3, 10)
	if len(got) != 2 || got[0] != "booting" || got[1] != "seeding" {
		t.Errorf("reports: %v", got)
	}
}
