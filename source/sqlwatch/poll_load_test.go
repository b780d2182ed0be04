package sqlwatch

import (
	"net/url"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// A slow change check is spaced so that checks take at most poll_load of
// the time, and the watcher says so; once checks are quick again they
// come every PollInterval. Without PollLoad (SQLite) nothing is spaced.
func TestPollLoadSpacesSlowChecks(t *testing.T) {
	for _, tt := range []struct {
		name string
		load float64
		// checks in 10 s of 50 ms checks, PollInterval 100 ms
		want int
	}{
		{"10%", 0.10, 20},           // one check per 500 ms
		{"25%", 0.25, 50},           // per 200 ms
		{"100% (no limit)", 1, 100}, // per PollInterval
		{"unset (SQLite)", 0, 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := &fakeStore{}
				store.set(rowsAB...)
				w, lb := newTestWatcher(t, Config{PollInterval: 100 * time.Millisecond, ReconcileInterval: Never, PollLoad: tt.load}, store, &testLayout{})
				var sink batchLog
				stop := run(t, w, &sink)
				defer stop()
				synctest.Wait()
				store.setCheckCost(50 * time.Millisecond)
				before := store.checkCount()
				time.Sleep(10*time.Second + 10*time.Millisecond)
				synctest.Wait()
				// The first check after the cost changed still came
				// PollInterval after the one before.
				if got := store.checkCount() - before; got < tt.want || got > tt.want+1 {
					t.Errorf("checks in 10 s of 50 ms checks = %d, want %d", got, tt.want)
				}
				slow := lb.count("the change check is slow")
				if paced := tt.load > 0 && tt.load < 1; paced && slow != 1 || !paced && slow != 0 {
					t.Errorf("logged %d times that the check is slow", slow)
				}

				store.setCheckCost(0)
				time.Sleep(time.Second)
				synctest.Wait()
				before = store.checkCount()
				time.Sleep(time.Second + 10*time.Millisecond)
				synctest.Wait()
				if got := store.checkCount() - before; got != 10 {
					t.Errorf("checks in 1 s once they are instant = %d, want 10 (every PollInterval)", got)
				}
				if quick := lb.count("the change check is quick again"); quick != slow {
					t.Errorf("logged %d times that the check is quick again, want %d", quick, slow)
				}

				// A change is still seen at the next check.
				store.set(rowsAB[:1]...)
				time.Sleep(110 * time.Millisecond)
				synctest.Wait()
				if b := sink.all(); len(b) < 2 || len(keysOf(b[len(b)-1])) != 1 {
					t.Errorf("the change was not delivered: %d batches", len(b))
				}
			})
		})
	}
}

func TestParsePollLoad(t *testing.T) {
	for query, want := range map[string]any{
		"":                0.0,
		"poll_load=10":    0.10,
		"poll_load=10%25": 0.10, // 10%, escaped as a URL needs it
		"poll_load=2.5":   0.025,
		"poll_load=100":   1.0,
		"poll_load=1":     0.01,
		"poll_load=0.5":   "is not a percentage from 1 to 100",
		"poll_load=101":   "is not a percentage from 1 to 100",
		"poll_load=":      `poll_load="" is not a percentage`,
		"poll_load=half":  `poll_load="half" is not a percentage`,
		"poll_load=-5":    "is not a percentage",
	} {
		q, err := url.ParseQuery(query)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseReadParams(q)
		switch want := want.(type) {
		case float64:
			if err != nil || got.PollLoad != want {
				t.Errorf("%q: %v, %v; want %v", query, got.PollLoad, err, want)
			}
		case string:
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%q: error %v, want one saying %q", query, err, want)
			}
		}
	}
	if err := (&Config{PollLoad: 0.001}).Validate(); err == nil {
		t.Error("Config with PollLoad 0.001 accepted")
	}
}

// A server source spaces its polling by default, and poll_load= reaches
// the watcher.
func TestServerPollLoad(t *testing.T) {
	if got := (&ServerConfig{}).Watch().PollLoad; got != DefaultPollLoad {
		t.Errorf("a server's PollLoad by default = %v, want %v", got, DefaultPollLoad)
	}
	q, _ := url.ParseQuery("poll_load=25")
	p, err := ParseReadParams(q)
	if err != nil {
		t.Fatal(err)
	}
	if got := (&ServerConfig{PollLoad: p.PollLoad}).Watch().PollLoad; got != 0.25 {
		t.Errorf("PollLoad with poll_load=25 = %v, want 0.25", got)
	}
	c := Config{}
	if err := c.Validate(); err != nil || c.PollLoad != 1 {
		t.Errorf("Config{} validates to PollLoad %v (%v), want 1: no spacing", c.PollLoad, err)
	}
}
