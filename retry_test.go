package dbfallback

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestRetry(t *testing.T) {
	transient := errors.New("transient")
	final := errors.New("final")
	fast := retryPolicy{initial: time.Millisecond, max: 4 * time.Millisecond}
	tests := []struct {
		name      string
		policy    retryPolicy
		fails     int   // tries that fail before success
		err       error // what a failing try returns
		wantTries int
		minTries  int // when set, tries may be anywhere in [minTries, wantTries]: timers run late on a loaded machine
		wantErr   error
		atMost    time.Duration // the whole call
	}{
		{name: "success at once", policy: fast, wantTries: 1},
		{name: "success after failures", policy: fast, fails: 3, err: transient, wantTries: 4},
		{name: "a stopped error ends at once, unmarked", policy: fast, fails: 5, err: stop(final), wantTries: 1, wantErr: final},
		{name: "tries cap", policy: retryPolicy{initial: time.Millisecond, max: time.Millisecond, tries: 3}, fails: 100, err: transient, wantTries: 3, wantErr: transient},
		{name: "one try", policy: retryPolicy{tries: 1, initial: time.Hour}, fails: 100, err: transient, wantTries: 1, wantErr: transient, atMost: time.Second},
		{name: "a wait past the budget is not begun", policy: retryPolicy{initial: 50 * time.Millisecond, max: 50 * time.Millisecond, budget: 120 * time.Millisecond},
			fails: 100, err: transient, minTries: 2, wantTries: 3, wantErr: transient, atMost: 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			runs := 0
			tries, err := retry(context.Background(), tt.policy, func() error {
				runs++
				if runs <= tt.fails {
					return tt.err
				}
				return nil
			})
			if tt.minTries > 0 {
				// Each try starts no earlier than the nominal schedule: late
				// timers can only make the budget end sooner, never later.
				assert.GreaterOrEqual(t, tries, tt.minTries)
				assert.LessOrEqual(t, tries, tt.wantTries)
			} else {
				assert.Equal(t, tt.wantTries, tries)
			}
			assert.Equal(t, tries, runs)
			if tt.wantErr == nil {
				assert.NoError(t, err)
			} else {
				assert.Same(t, tt.wantErr, err)
			}
			if tt.atMost > 0 {
				assert.Less(t, time.Since(start), tt.atMost)
			}
		})
	}
	t.Run("ctx cuts a wait short", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		start := time.Now()
		tries, err := retry(ctx, retryPolicy{initial: time.Hour}, func() error { return transient })
		assert.Equal(t, 1, tries)
		assert.Same(t, transient, err, "the last error, not ctx's: the caller reads ctx.Err()")
		assert.Less(t, time.Since(start), time.Second)
	})
	t.Run("stop(nil) is nil", func(t *testing.T) {
		assert.NoError(t, stop(nil))
	})
}

func TestRetrySpread(t *testing.T) {
	tests := []struct {
		name   string
		spread float64
		lo, hi time.Duration
	}{
		{"none", 0, 100 * time.Millisecond, 100 * time.Millisecond},
		{"±20%", 0.2, 80 * time.Millisecond, 120 * time.Millisecond},
		{"full", 1, 0, 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := retryPolicy{spread: tt.spread}
			seen := map[time.Duration]bool{}
			for range 1000 {
				d := p.spreadOf(100 * time.Millisecond)
				assert.GreaterOrEqual(t, d, tt.lo)
				assert.LessOrEqual(t, d, tt.hi)
				seen[d] = true
			}
			if tt.spread > 0 {
				assert.Greater(t, len(seen), 100, "waits differ from caller to caller")
			}
		})
	}
}
