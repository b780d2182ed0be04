package main

// The change stream: re-REGISTERs written into the store at a set rate.
// Change k (from 1) refreshes AOR (k-1) mod A and writes k as the binding's
// cseq, so the reginfo contact's cseq attribute names the change a NOTIFY
// reports. Cycling through the AORs puts A/rate seconds between two
// changes of one AOR. Each AOR always goes through the same writer, so its
// changes commit in order even with several writers.

import (
	"context"
	"sync"
	"time"

	"github.com/regbridge/regbridge/source"
)

// writerQueue is how many changes wait for one writer; the pacer blocks
// (and the achieved rate drops) when the store falls behind.
const writerQueue = 256

// changeLog is when each change was written, by change number.
type changeLog struct {
	// issued and committed are ns since t0 when the statement was sent and
	// when the store acknowledged its commit; committed is 0 for a change
	// not written. Index 0 is unused.
	issued, committed []int64
	writeErrors       int
	firstErr          error
	written           int
	// last is, per AOR, the number of its last committed change (0: none).
	last []int64
}

// driveChanges writes cfg.changes changes at cfg.rate, giving up on those
// it could not send by the planned end plus grace.
func (r *runner) driveChanges(ctx context.Context, st store) *changeLog {
	k := r.cfg.changes
	log := &changeLog{issued: make([]int64, k+1), committed: make([]int64, k+1)}
	planned := time.Duration(float64(k) / r.cfg.rate * float64(time.Second))
	grace := max(2*time.Second, planned/10)
	// Writes in flight at the deadline finish under ctx; later ones are
	// not sent.
	paceCtx, cancel := context.WithTimeout(ctx, planned+grace)
	defer cancel()

	writers := r.cfg.writers
	queues := make([]chan int, writers)
	errs := make([]int, writers)
	firstErrs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		queues[w] = make(chan int, writerQueue)
		wg.Go(func() {
			batch := make([]int, 0, r.cfg.batch)
			rows := make([]row, 0, r.cfg.batch)
			for n := range queues[w] {
				// Group what is already waiting (only when behind, and only
				// up to --batch, 1 by default: one commit per change).
				batch = append(batch[:0], n)
			more:
				for len(batch) < r.cfg.batch {
					select {
					case m, ok := <-queues[w]:
						if !ok {
							break more
						}
						batch = append(batch, m)
					default:
						break more
					}
				}
				if paceCtx.Err() != nil {
					continue // past the deadline: not written
				}
				now := time.Now()
				rows = rows[:0]
				for _, m := range batch {
					row := r.rows[(m-1)%r.cfg.aors]
					row.cseq = uint32(m)
					row.expires = now.Add(bindingLifetime).Truncate(time.Second)
					row.modified = now.Truncate(time.Second)
					rows = append(rows, row)
				}
				issued := r.since()
				err := st.refresh(ctx, w, rows)
				done := r.since()
				for _, m := range batch {
					log.issued[m] = issued
					if err == nil {
						log.committed[m] = done
					}
				}
				if err != nil {
					errs[w] += len(batch)
					if firstErrs[w] == nil {
						firstErrs[w] = err
					}
				}
			}
		})
	}

	start := time.Now()
	for n := 1; n <= k; n++ {
		due := start.Add(time.Duration(float64(n-1) / r.cfg.rate * float64(time.Second)))
		// Sleep only when at least a millisecond ahead; timers are not finer.
		if d := time.Until(due); d >= time.Millisecond && !source.Sleep(paceCtx, d) {
			break
		}
		select {
		case queues[((n-1)%r.cfg.aors)%writers] <- n:
		case <-paceCtx.Done():
		}
		if paceCtx.Err() != nil {
			break
		}
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()

	log.last = make([]int64, r.cfg.aors)
	for n := 1; n <= k; n++ {
		if log.committed[n] != 0 {
			log.written++
			log.last[(n-1)%r.cfg.aors] = int64(n)
		}
	}
	for w := range writers {
		log.writeErrors += errs[w]
		if log.firstErr == nil {
			log.firstErr = firstErrs[w]
		}
	}
	return log
}

// caughtUp reports whether every watched subscription has seen the last
// change of its AOR (or has ended, which the report counts as losses).
func (r *runner) caughtUp(log *changeLog) bool {
	for _, l := range r.lanes {
		l.subsMu.Lock()
		for i := l.id; i < len(r.subs); i += len(r.lanes) {
			s := &r.subs[i]
			if s.watched && s.phase == subActive && s.seen < log.last[s.aor] {
				l.subsMu.Unlock()
				return false
			}
		}
		l.subsMu.Unlock()
	}
	return true
}

// losses counts, per subscription that watched from the start, the
// committed changes of its AOR it never learned of (neither directly nor
// through a later change of the same contact), and how many were expected.
func (r *runner) losses(log *changeLog) (lost, expected uint64, lossySubs int) {
	aors := int64(r.cfg.aors)
	for _, l := range r.lanes {
		l.subsMu.Lock()
		for i := l.id; i < len(r.subs); i += len(r.lanes) {
			s := &r.subs[i]
			if !s.watched {
				continue
			}
			missed := uint64(0)
			for j := int64(s.aor) + 1; j < int64(len(log.committed)); j += aors {
				if log.committed[j] == 0 {
					continue
				}
				expected++
				if j > s.seen {
					missed++
				}
			}
			if missed > 0 {
				lost += missed
				lossySubs++
			}
		}
		l.subsMu.Unlock()
	}
	return lost, expected, lossySubs
}
