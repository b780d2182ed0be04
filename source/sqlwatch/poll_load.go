package sqlwatch

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Polling a large table costs the registrar's database a scan per change
// check: the aggregate over every row (docs/stores.md#sql-servers). On a
// table of 1,000,000 rows one check takes longer than the default poll
// interval, so without a limit the server would scan without a break
// (docs/performance.md measured 2.7 to 3.1 times the database's CPU), and
// on a table that changes all the time each check is followed by reads
// (the changed rows, the keys) that scan it again. The poll loop therefore
// spaces its rounds by what they cost: a round (the check and the reads
// it led to) that took d starts the next one no sooner than d/PollLoad
// after it started, so polling keeps the database busy at most PollLoad
// of the time, whatever the table's size. On small tables (a round of a
// millisecond) nothing changes: PollInterval is the longer wait.

const (
	// PollLoadParam is the URL parameter of Config.PollLoad, in percent.
	PollLoadParam = "poll_load"
	// DefaultPollLoad keeps the change check to a tenth of the time.
	DefaultPollLoad = 0.10
	// minPollLoad: below 1% a large table would be checked too rarely
	// to be of use; change capture (cdc=) is the way then.
	minPollLoad = 0.01
)

// parsePollLoad reads poll_load= (a percentage, 1 to 100; a % sign,
// escaped in the URL as %25, is allowed); 0 when absent.
func parsePollLoad(own url.Values) (float64, error) {
	if !own.Has(PollLoadParam) {
		return 0, nil
	}
	v := own.Get(PollLoadParam)
	n, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
	if err != nil || n < 100*minPollLoad || n > 100 {
		return 0, fmt.Errorf("%s=%q is not a percentage from 1 to 100 (such as 10): the largest share of time the change check may keep the database busy; 100%% checks every REGBRIDGE_POLL_INTERVAL whatever a check costs", PollLoadParam, v)
	}
	return n / 100, nil
}

// pollPacer spaces the change checks. The first time their cost
// stretches the interval it says so at Info; later changes either way
// (a busy table's rounds vary around the interval) at Debug.
type pollPacer struct {
	w         *Watcher
	stretched bool
	told      bool
}

// next returns the time from the start of a round that took took to the
// start of the next.
func (p *pollPacer) next(took time.Duration) time.Duration {
	cfg := &p.w.cfg
	wait := max(cfg.PollInterval, time.Duration(float64(took)/cfg.PollLoad))
	stretched := wait > cfg.PollInterval
	if stretched != p.stretched {
		p.stretched = stretched
		level := slog.LevelDebug
		if !p.told {
			level, p.told = slog.LevelInfo, true
		}
		if stretched {
			pct := strconv.FormatFloat(100*cfg.PollLoad, 'f', -1, 64) + "%"
			p.w.log.Log(context.Background(), level, "the change check is slow: checking less often so that polling keeps the database busy at most "+
				pct+" of the time; cdc= reports changes without scanning the table",
				"took", took.Round(time.Millisecond), "every", wait.Round(time.Millisecond),
				"poll_interval", cfg.PollInterval, "poll_load", pct)
		} else {
			p.w.log.Debug("the change check is quick again: checking every poll interval", "poll_interval", cfg.PollInterval)
		}
	}
	return wait
}
