package sqlwatch

import (
	"bytes"
	"context"
	"errors"
	"iter"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
)

// fakeStore is an in-memory table behind a fake Dialect: rows of text
// columns (k, uri, exp), a version that the fingerprint reports, and a
// switch that makes every call fail.
type fakeStore struct {
	mu        sync.Mutex
	rows      [][3][]byte // nil column: NULL
	version   int
	fail      error // when set, Open, Fingerprint and Snapshot fail with it
	reopen    int   // Fingerprint returns ErrReopen this many times
	types     []string
	opens     []time.Time
	snapshots int
	checks    int           // Fingerprint calls
	checkCost time.Duration // how long each Fingerprint takes
}

func (s *fakeStore) setCheckCost(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkCost = d
}

func (s *fakeStore) checkCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checks
}

func (s *fakeStore) set(rows ...[3]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows = s.rows[:0]
	for _, r := range rows {
		s.rows = append(s.rows, [3][]byte{[]byte(r[0]), []byte(r[1]), []byte(r[2])})
	}
	s.version++
}

func (s *fakeStore) setFail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = err
}

func (s *fakeStore) snapshotCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshots
}

func (s *fakeStore) openTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.opens)
}

func (s *fakeStore) Open(ctx context.Context, t *Table) (Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opens = append(s.opens, time.Now())
	if s.fail != nil {
		return nil, s.fail
	}
	types := s.types
	if types == nil {
		types = []string{"VARCHAR", "VARCHAR", "BIGINT"}
	}
	return &fakeSession{s: s, types: types, row: make([]Value, 3)}, nil
}

type fakeSession struct {
	s     *fakeStore
	types []string
	row   []Value
}

func (f *fakeSession) Types() []string { return f.types }

func (f *fakeSession) Fingerprint(ctx context.Context) (string, error) {
	f.s.mu.Lock()
	f.s.checks++
	cost := f.s.checkCost
	f.s.mu.Unlock()
	time.Sleep(cost) // unlocked: the test reads the counts meanwhile
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if f.s.fail != nil {
		return "", f.s.fail
	}
	if f.s.reopen > 0 {
		f.s.reopen--
		return "", ErrReopen
	}
	return string(rune('a' + f.s.version%26)), nil
}

func (f *fakeSession) Snapshot(ctx context.Context, fn func(row []Value)) error {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if f.s.fail != nil {
		return f.s.fail
	}
	f.s.snapshots++
	for _, r := range f.s.rows {
		for i, col := range r {
			f.row[i].SetText(col)
		}
		fn(f.row)
	}
	return nil
}

func (f *fakeSession) Close() error { return nil }

// testLayout reads (k, uri, exp): a non-empty key, a sip: URI, an epoch.
type testLayout struct {
	bindErr error
}

func (l *testLayout) Table() Table {
	return Table{Name: "t", Columns: []string{"k", "uri", "exp"}, Key: 0, Watch: []string{"k", "exp"}, LogKey: []int{0}}
}

func (l *testLayout) Bind(types []string) error { return l.bindErr }

var errBad = errors.New("bad test row")

func (l *testLayout) Decode(row []Value, c *source.Contact) error {
	if row[0].Kind != Text || len(row[0].Bytes) == 0 {
		return errBad
	}
	c.Key = row[0].String("")
	if !bytes.HasPrefix(row[1].Bytes, []byte("sip:")) {
		return errBad
	}
	c.URI = row[1].String("")
	c.AOR = c.URI
	sec, ok := row[2].Int64()
	if !ok {
		return errBad
	}
	c.Expires = time.Unix(sec, 0)
	return nil
}

// batchLog records what the watcher delivered (copies: it reuses arrays).
type batchLog struct {
	mu      sync.Mutex
	batches []source.Batch
	fail    int // fail this many Apply calls first
}

func (b *batchLog) Apply(ctx context.Context, batch source.Batch) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail > 0 {
		b.fail--
		return errors.New("sink busy")
	}
	batch.Contacts = slices.Clone(batch.Contacts)
	b.batches = append(b.batches, batch)
	return nil
}

func (b *batchLog) all() []source.Batch {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.batches)
}

// keyedLog is a batchLog that is a KeyedSink; same and keyed parallel
// batches (what ApplyFull named, whether it was ApplyFull).
type keyedLog struct {
	batchLog
	same      [][]string
	keyed     []bool
	failKeyed int // fail this many ApplyFull calls first
	failed    bool
}

func (k *keyedLog) Apply(ctx context.Context, batch source.Batch) error {
	err := k.batchLog.Apply(ctx, batch)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		k.same, k.keyed = append(k.same, nil), append(k.keyed, false)
	}
	return err
}

func (k *keyedLog) ApplyFull(ctx context.Context, batch source.Batch, same iter.Seq[string]) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failKeyed > 0 {
		k.failKeyed--
		k.failed = true
		return errors.New("sink busy")
	}
	batch.Contacts = slices.Clone(batch.Contacts)
	k.batches = append(k.batches, batch)
	keys := slices.Sorted(same)
	k.same, k.keyed = append(k.same, keys), append(k.keyed, true)
	return nil
}

// keyedFailing reports whether failKeyed was set (and is now used up).
func (k *keyedLog) keyedFailing() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	f := k.failed
	k.failed = false
	return f
}

var _ KeyedSink = (*keyedLog)(nil)

func keysOf(b source.Batch) []string {
	var k []string
	for _, c := range b.Contacts {
		k = append(k, c.Key)
	}
	slices.Sort(k)
	return k
}

// logBuf collects log output across goroutines.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

func newTestWatcher(t *testing.T, cfg Config, d Dialect, l Layout) (*Watcher, *logBuf) {
	t.Helper()
	lb := &logBuf{}
	w, err := New(cfg, d, l, slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", lb.buf.String())
		}
	})
	return w, lb
}

// run starts w in the bubble; the returned stop cancels it and checks
// that Run returned nil.
func run(t *testing.T, w *Watcher, sink source.Sink) (stop func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, sink) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v after cancel, want nil", err)
		}
	}
}
