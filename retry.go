package dbfallback

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// retry.go is the package's one retry loop, shaped after
// cenkalti/backoff/v5's Retry: an operation, errors it marks final with
// stop, and a policy. Open's primary wait and Tx both use it.

// retryPolicy says how a retry loop waits between tries and when it gives
// up. The zero value of a limit means "no limit of that kind"; ctx always
// bounds the loop.
type retryPolicy struct {
	// initial is the first wait; each later wait doubles, up to max.
	initial, max time.Duration
	// spread randomizes each wait by ±spread of it, so that callers that
	// failed together do not retry together (0.2 means ±20%).
	spread float64
	// tries caps the number of tries (0: no cap).
	tries int
	// budget caps the time from the first try to the start of the last
	// one: a wait that would end after start+budget is not begun (0: no
	// cap).
	budget time.Duration
}

// The retry policies of the package, in one place.
var (
	// primaryWaitPolicy retries a transient primary failure during Open;
	// WithPrimaryWait sets its budget. Waits grow from 250ms to 5s: a
	// database that is starting up needs seconds, and many restarting
	// instances must not hammer it.
	primaryWaitPolicy = retryPolicy{initial: 250 * time.Millisecond, max: 5 * time.Second, spread: 0.2}
	// txPolicy retries a conflicting transaction in Tx (see
	// defaultTxRetryBudget for why its budget is time). A conflict on
	// PostgreSQL is over as soon as the winner commits, a millisecond or
	// two, and the pool already queues callers beyond its size, so waits
	// start at 1ms and stop growing at 10ms. Longer waits do not raise
	// throughput (the commits are the bottleneck) and lengthen the slowest
	// call: 64 writers on one row saw 3-4s at this cap, 4-6s at 100ms and
	// 6-7s with the 5ms-200ms ±20% this loop had before (BENCHMARKS.md).
	// Spread 1 (a wait anywhere from nothing to twice the step) keeps
	// dozens of callers that lost on one row from meeting again.
	txPolicy = retryPolicy{initial: time.Millisecond, max: 10 * time.Millisecond, spread: 1, budget: defaultTxRetryBudget}
)

// stopError marks an error that retrying cannot fix.
type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }
func (e *stopError) Unwrap() error { return e.err }

// stop marks err as final: retry returns it at once, without the mark.
func stop(err error) error {
	if err == nil {
		return nil
	}
	return &stopError{err}
}

// retry runs op until it returns nil or an error marked with stop, the
// policy gives up, or ctx is done, and returns how many times op ran and
// its last error (unmarked). A wait is cut short when ctx is done; the
// caller reads ctx.Err() if it needs to tell that case apart.
func retry(ctx context.Context, p retryPolicy, op func() error) (tries int, err error) {
	start := time.Now()
	wait := p.initial
	for {
		tries++
		err = op()
		if err == nil {
			return tries, nil
		}
		var s *stopError
		if errors.As(err, &s) {
			return tries, s.err
		}
		if p.tries > 0 && tries >= p.tries {
			return tries, err
		}
		d := p.spreadOf(wait)
		if p.budget > 0 && time.Since(start)+d > p.budget {
			return tries, err
		}
		if !sleepCtx(ctx, d) {
			return tries, err
		}
		wait = min(wait*2, p.max)
	}
}

// spreadOf returns d randomized by ±p.spread of it.
func (p retryPolicy) spreadOf(d time.Duration) time.Duration {
	if p.spread <= 0 {
		return d
	}
	return d + time.Duration((rand.Float64()*2-1)*p.spread*float64(d))
}

// sleepCtx waits d, or less when ctx is done first; it reports whether
// the whole wait passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
