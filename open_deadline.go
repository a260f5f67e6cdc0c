package dbfallback

import (
	"context"
	"fmt"
	"time"
)

// open_deadline.go shares a caller's deadline between the candidates of
// Open. Without it, a silent primary given the default 5 s connect timeout
// under a 1 s deadline uses the whole second and Open returns
// context.DeadlineExceeded with no database.
//
// When ctx has a deadline, every candidate but the last gets the time that
// remains minus a reserve for the ones after it:
//
//	reserve = min(max(remaining/4, 250ms), 2s, remaining/2)
//
//   - 250 ms at least: opening the SQLite fallback and running a typical
//     schema hook takes about 1–5 ms on a shared 2-core machine
//     (BENCHMARKS.md), and tens of milliseconds with a cold disk or a
//     write-ahead log to recover; 250 ms leaves that fifty times over.
//   - a quarter of the remaining time when that is more: a caller who
//     allows longer is on a slower machine or disk, and the fallback's
//     init hooks may have more to do.
//   - 2 s at most: a fallback that cannot open in 2 s will not open in 20,
//     and the primary, usually the database the caller wants, keeps the
//     rest.
//   - half at most: the primary always gets at least half.
//
// Init hooks run under the caller's ctx, not the shortened one: a hook
// cut half-way would leave a half-migrated database.

const (
	minFallbackReserve = 250 * time.Millisecond
	maxFallbackReserve = 2 * time.Second
)

// fallbackReserve returns how much of remaining is kept for the candidates
// after the one about to be tried.
func fallbackReserve(remaining time.Duration) time.Duration {
	return min(max(remaining/4, minFallbackReserve), maxFallbackReserve, remaining/2)
}

// candidateBudget is the share of the caller's deadline a candidate got.
type candidateBudget struct {
	total, allowed, reserve time.Duration // zero when ctx has no deadline
}

// candidateContext returns the context to try a candidate under: ctx
// itself when it has no deadline or nothing comes after the candidate,
// else ctx with a deadline that leaves fallbackReserve of the remaining
// time to the rest of the chain.
func candidateContext(ctx context.Context, more bool) (context.Context, context.CancelFunc, candidateBudget) {
	deadline, ok := ctx.Deadline()
	if !ok || !more {
		return ctx, func() {}, candidateBudget{}
	}
	remaining := time.Until(deadline)
	reserve := fallbackReserve(remaining)
	cctx, cancel := context.WithDeadline(ctx, deadline.Add(-reserve))
	return cctx, cancel, candidateBudget{total: remaining, allowed: remaining - reserve, reserve: reserve}
}

// explain rewrites the error of an attempt that the shortened deadline
// cut, so the reason says why it stopped early.
func (b candidateBudget) explain(ctx, cctx context.Context, a *Attempt) {
	if a.Err == nil || b.reserve == 0 || cctx.Err() == nil || ctx.Err() != nil {
		return
	}
	a.Err = &attemptError{
		msg: fmt.Sprintf("gave up after %s, the part of the caller's deadline (%s) not kept for the fallback (%s): %v",
			b.allowed.Round(time.Millisecond), b.total.Round(time.Millisecond), b.reserve.Round(time.Millisecond), a.Err),
		err: a.Err,
	}
}
