package main

// The report: raw observations (samples, tallies, change times, /proc
// readings) turned into figures, printed for people or as JSON.

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
)

// dist is a distribution of durations, in milliseconds.
type dist struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// newDist sorts us (microseconds) and reads its percentiles (nearest rank).
func newDist(us []uint32) dist {
	if len(us) == 0 {
		return dist{}
	}
	slices.Sort(us)
	at := func(p float64) float64 {
		i := int(p*float64(len(us))+0.999999) - 1
		return float64(us[min(max(i, 0), len(us)-1)]) / 1000
	}
	return dist{Count: len(us), P50: at(.50), P90: at(.90), P99: at(.99), P999: at(.999), Max: float64(us[len(us)-1]) / 1000}
}

func (d dist) String() string {
	if d.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (%d samples)",
		ms(d.P50), ms(d.P90), ms(d.P99), ms(d.P999), ms(d.Max), d.Count)
}

func ms(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2fms", v)
	}
	return fmt.Sprintf("%.1fms", v)
}

type report struct {
	Server        string `json:"server"`
	Transport     string `json:"transport"`
	Sockets       int    `json:"sockets"`
	Store         string `json:"store"`
	Spawned       bool   `json:"spawned"`
	Subscriptions int    `json:"subscriptions"`
	AORs          int    `json:"aors"`

	Subscribe struct {
		Active      int         `json:"active"`
		Failed      int         `json:"failed"`
		Statuses    map[int]int `json:"failed_statuses,omitempty"`
		Seconds     float64     `json:"seconds"`
		Rate        float64     `json:"per_second"`
		FirstNotify dist        `json:"first_notify"` // SUBSCRIBE sent to first NOTIFY
	} `json:"subscribe"`

	Changes struct {
		Planned     int     `json:"planned"`
		Written     int     `json:"written"`
		WriteErrors int     `json:"write_errors"`
		FirstError  string  `json:"first_error,omitempty"`
		TargetRate  float64 `json:"target_per_second"`
		Rate        float64 `json:"per_second"`
		Write       dist    `json:"write"` // statement sent to commit acknowledged
	} `json:"changes"`

	Notify struct {
		Completed uint64  `json:"completed"` // change NOTIFYs answered 200
		Seconds   float64 `json:"seconds"`   // first change sent to last change NOTIFY
		Rate      float64 `json:"per_second"`
		Peak      uint32  `json:"peak_per_second"` // busiest whole second
		All       uint64  `json:"all"`             // every NOTIFY answered 200 during the run
	} `json:"notify"`

	// Latency is store commit to NOTIFY arrival, per subscription and change.
	Latency dist `json:"latency"`
	// Early counts NOTIFYs that arrived before the store acknowledged the
	// commit they report (counted as 0 ms).
	Early int `json:"early"`
	// FanOut is, per change, store commit to the arrival of the NOTIFY at
	// the last of the AOR's watchers.
	FanOut dist `json:"fan_out"`

	Correctness struct {
		Expected   uint64 `json:"expected"` // (subscription, change) pairs that had to be reported
		Lost       uint64 `json:"lost"`
		LossySubs  int    `json:"lossy_subscriptions"`
		GappySubs  int    `json:"gappy_subscriptions"` // subscriptions with a version gap
		Unanswered int    `json:"unconfirmed_unsubscribes"`
		tally
	} `json:"correctness"`

	Regbridge struct {
		PID           int        `json:"pid,omitempty"`
		Error         string     `json:"error,omitempty"`
		SubscribeCPU  float64    `json:"subscribe_cpu_seconds"`
		ChangeCPU     float64    `json:"change_cpu_seconds"` // change phase and drain
		Cores         float64    `json:"change_cores"`
		MicrosPerNote float64    `json:"cpu_us_per_notify"`
		After         procSample `json:"after"`
	} `json:"regbridge"`

	Regload struct {
		CPU       float64 `json:"cpu_seconds"`
		ChangeCPU float64 `json:"change_cpu_seconds"` // change phase and drain
		Cores     float64 `json:"change_cores"`
		RSS       uint64  `json:"rss_bytes"`
	} `json:"regload"`

	// StoreServer is the store's server process (found by its port when
	// it is on this host), with its child processes, over the change
	// phase and drain.
	StoreServer struct {
		PID       int     `json:"pid,omitempty"`
		Error     string  `json:"error,omitempty"`
		ChangeCPU float64 `json:"change_cpu_seconds"`
		Cores     float64 `json:"change_cores"`
	} `json:"store_server"`

	// HostBusy is the host's busy CPU time over the change phase and
	// drain, in cores, out of Cores.
	HostBusy float64 `json:"host_busy_cores"`
	Cores    int     `json:"host_cores"`

	LoadBefore [3]float64  `json:"load_before"`
	LoadAfter  [3]float64  `json:"load_after"`
	UDP        udpCounters `json:"udp_errors"` // host-wide, during the run
	OK         bool        `json:"ok"`
}

// fill computes the notification figures from the lanes' samples and the
// change log.
func (rep *report) fill(r *runner, log *changeLog) {
	var t tally
	var samples []sample
	var perSec []uint64
	var firsts []uint32
	for _, l := range r.lanes {
		l.subsMu.Lock()
		t.add(&l.tally)
		t.SendErrors += l.sendErrors.Load()
		samples = append(samples, l.samples...)
		firsts = append(firsts, l.firsts...)
		for i, n := range l.perSec {
			for len(perSec) <= i {
				perSec = append(perSec, 0)
			}
			perSec[i] += uint64(n)
		}
		for i := l.id; i < len(r.subs); i += len(r.lanes) {
			switch s := &r.subs[i]; s.phase {
			case subFailed:
				rep.Subscribe.Failed++
				if rep.Subscribe.Statuses == nil {
					rep.Subscribe.Statuses = map[int]int{}
				}
				rep.Subscribe.Statuses[s.status]++
			case subLeaving:
				rep.Correctness.Unanswered++
			}
			if r.subs[i].gapped {
				rep.Correctness.GappySubs++
			}
		}
		l.subsMu.Unlock()
	}
	rep.Subscribe.FirstNotify = newDist(firsts)
	rep.Correctness.tally = t
	rep.Notify.All = t.Notifies
	if log == nil {
		return
	}

	rep.Changes.Planned = len(log.committed) - 1
	rep.Changes.Written = log.written
	rep.Changes.WriteErrors = log.writeErrors
	if log.firstErr != nil {
		rep.Changes.FirstError = log.firstErr.Error()
	}
	var writes []uint32
	first, lastCommit := int64(-1), int64(0)
	for n := 1; n < len(log.committed); n++ {
		if c := log.committed[n]; c != 0 {
			writes = append(writes, uint32(max(0, c-log.issued[n])/1000))
			if first < 0 {
				first = log.issued[n]
			}
			lastCommit = max(lastCommit, c)
		}
	}
	rep.Changes.Write = newDist(writes)
	if first >= 0 && lastCommit > first {
		rep.Changes.Rate = float64(log.written) / (float64(lastCommit-first) / 1e9)
	}

	lat := make([]uint32, 0, len(samples))
	lastAt := make([]int64, len(log.committed))
	end := int64(0)
	for _, s := range samples {
		c := log.committed[s.seq]
		if c == 0 {
			continue // reported, yet its write returned an error
		}
		at := int64(s.at) * 1000
		if at < c {
			rep.Early++
		}
		lat = append(lat, uint32(max(0, at-c)/1000))
		if at > lastAt[s.seq] {
			lastAt[s.seq] = at
		}
		end = max(end, at)
	}
	rep.Latency = newDist(lat)
	var fan []uint32
	for seq, at := range lastAt {
		if at != 0 {
			fan = append(fan, uint32(max(0, at-log.committed[seq])/1000))
		}
	}
	rep.FanOut = newDist(fan)

	rep.Notify.Completed = t.ChangeNotifies
	if first >= 0 && end > first {
		rep.Notify.Seconds = float64(end-first) / 1e9
		rep.Notify.Rate = float64(t.ChangeNotifies) / rep.Notify.Seconds
		// Whole seconds inside the window only.
		for sec := first/1e9 + 1; sec < end/1e9 && int(sec) < len(perSec); sec++ {
			rep.Notify.Peak = max(rep.Notify.Peak, uint32(perSec[sec]))
		}
	}
	rep.Correctness.Lost, rep.Correctness.Expected, rep.Correctness.LossySubs = r.losses(log)
}

// judge sets OK: every subscription made, every change written notified
// once to each watcher, versions continuous. Falling short of the target
// rate is a figure, not a failure.
func (rep *report) judge() {
	c := &rep.Correctness
	rep.OK = rep.Subscribe.Active > 0 && rep.Subscribe.Failed == 0 && rep.Changes.WriteErrors == 0 &&
		c.Lost == 0 && c.Duplicates == 0 && c.VersionGaps == 0 && c.WrongAOR == 0 &&
		c.WrongChange == 0 && c.BadMessages == 0 && c.Ended == 0 && c.Stale == 0
}

func (rep *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

func (rep *report) writeText(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	mib := func(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	spawned := ""
	if rep.Spawned {
		spawned = " (spawned)"
	}
	p("regload: %d subscriptions over %d AORs, %s %s%s, %d sockets; store %s",
		rep.Subscriptions, rep.AORs, rep.Transport, rep.Server, spawned, rep.Sockets, rep.Store)
	s := &rep.Subscribe
	p("subscribe:   %d active, %d failed%s in %.2fs (%.0f/s); SUBSCRIBE to first NOTIFY %s",
		s.Active, s.Failed, statuses(s.Statuses), s.Seconds, s.Rate, s.FirstNotify)
	c := &rep.Changes
	p("changes:     %d of %d written at %.0f/s (target %.0f/s), %d errors%s; store write %s",
		c.Written, c.Planned, c.Rate, c.TargetRate, c.WriteErrors, firstErr(c.FirstError), c.Write)
	if c.Written+c.WriteErrors < c.Planned {
		p("             the store took writes slower than the target rate; the rest were not sent")
	}
	n := &rep.Notify
	p("notify:      %d change NOTIFYs answered in %.2fs: %.0f/s (busiest second %d); %d NOTIFYs in all",
		n.Completed, n.Seconds, n.Rate, n.Peak, n.All)
	p("latency:     store commit to NOTIFY %s", rep.Latency)
	if rep.Early > 0 {
		p("             %d NOTIFYs arrived before the store acknowledged their commit (counted as 0)", rep.Early)
	}
	p("fan-out:     commit to the last watcher's NOTIFY, per change %s", rep.FanOut)
	k := &rep.Correctness
	p("correctness: lost %d of %d (%d subscriptions), duplicates %d, version gaps %d (%d subscriptions), coalesced %d",
		k.Lost, k.Expected, k.LossySubs, k.Duplicates, k.VersionGaps, k.GappySubs, k.Coalesced)
	var odd []string
	for _, x := range []struct {
		n    uint64
		what string
	}{
		{k.Retransmits, "NOTIFY retransmissions"}, {k.EndRetransmits, "NOTIFY retransmissions during the teardown"},
		{k.UnexpectedFull, "unexpected full-state documents"},
		{k.UnexpectedEvent, "unexpected contact events"}, {k.WrongAOR, "documents for another AOR"},
		{k.WrongChange, "contacts with a foreign cseq"}, {k.BadMessages, "unreadable messages"},
		{k.Unknown, "NOTIFYs for unknown dialogs"}, {k.Stale, "out-of-order NOTIFYs"},
		{k.SendErrors, "send errors"}, {k.Ended, "subscriptions ended by the server"},
		{uint64(k.Unanswered), "unsubscribes without a final NOTIFY"},
	} {
		if x.n > 0 {
			odd = append(odd, fmt.Sprintf("%d %s", x.n, x.what))
		}
	}
	if len(odd) > 0 {
		p("             also: %s", strings.Join(odd, ", "))
	}
	b := &rep.Regbridge
	switch {
	case b.PID == 0:
		p("regbridge:   CPU and memory not measured (%s)", b.Error)
	default:
		p("regbridge:   pid %d; CPU %.2fs during changes and drain (%.2f cores, %.0f µs per change NOTIFY), %.2fs for the subscriptions; RSS %s (peak %s), %d threads",
			b.PID, b.ChangeCPU, b.Cores, b.MicrosPerNote, b.SubscribeCPU, mib(b.After.RSS), mib(b.After.HWM), b.After.Threads)
	}
	p("regload:     CPU %.2fs, %.2fs during changes and drain (%.2f cores); RSS %s", rep.Regload.CPU, rep.Regload.ChangeCPU, rep.Regload.Cores, mib(rep.Regload.RSS))
	switch ss := &rep.StoreServer; {
	case ss.PID != 0:
		p("store:       %s server pid %d and its children; CPU %.2fs during changes and drain (%.2f cores)", rep.Store, ss.PID, ss.ChangeCPU, ss.Cores)
	case ss.Error != "":
		p("store:       server CPU not measured (%s)", ss.Error)
	}
	p("machine:     load average %.2f %.2f %.2f before, %.2f %.2f %.2f after; CPU busy %.2f of %d cores during changes and drain; UDP errors (host) in %d, rcvbuf %d, sndbuf %d",
		rep.LoadBefore[0], rep.LoadBefore[1], rep.LoadBefore[2], rep.LoadAfter[0], rep.LoadAfter[1], rep.LoadAfter[2],
		rep.HostBusy, rep.Cores, rep.UDP.InErrors, rep.UDP.RcvbufErrors, rep.UDP.SndbufErrors)
	if rep.OK {
		p("result:      OK")
	} else {
		p("result:      FAILED (see the lines above)")
	}
}

func statuses(m map[int]int) string {
	if len(m) == 0 {
		return ""
	}
	codes := make([]int, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%dx %d", m[c], c))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func firstErr(e string) string {
	if e == "" {
		return ""
	}
	return " (first: " + e + ")"
}
