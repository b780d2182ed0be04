package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sourcetest"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

// TestSQLSourceURLs: the SQL store schemes parse, build an adapter that
// reports Stats, and reject what they cannot use without echoing a
// password.
func TestSQLSourceURLs(t *testing.T) {
	tests := []struct {
		raw string
		err string // "" when valid
	}{
		{"kamailio+mysql://kam:pw@db.example.com:3306/kamailio?table=location&tz=Europe/Berlin", ""},
		{"kamailio+mysql://kam:pw@db.example.com/kamailio", ""},
		{"kamailio+postgres://kam:pw@db.example.com:5432/kamailio?table=location&tz=UTC&sslmode=disable", ""},
		{"opensips+mysql://os:pw@db.example.com/opensips?tz=America/New_York", ""},
		{"opensips+postgres://os:pw@[2001:db8::1]/opensips?sslmode=require", ""},
		{"opensips+sqlite:///var/lib/opensips/opensips.db?table=location&tz=Europe/Berlin", ""},
		{"opensips+sqlite:opensips.db", ""},
		{"kamailio+mysql://kam:pw@db.example.com/kamailio?tz=Mars/Olympus", `tz="Mars/Olympus"`},
		{"kamailio+postgres://kam:pw@db.example.com/kamailio?tabel=location", `unknown parameter "tabel"`},
		{"kamailio+mysql://kam:pw@db.example.com/kamailio?sslmode=disable", `unknown parameter "sslmode"`},
		{"kamailio+postgres://kam:pw@db.example.com", "no database"},
		{"opensips+mysql:///opensips", "no host"},
		{"opensips+sqlite:x.db?create=true", `unknown parameter "create"`},
		{"opensips+sqlite:///x.db?tz=nowhere", `tz="nowhere"`},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			err := checkSourceURL(tt.raw)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("checkSourceURL = %v, want an error containing %s", err, tt.err)
				}
				if strings.Contains(err.Error(), ":pw@") {
					t.Errorf("error repeats the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			src, err := newSource(&config{Source: tt.raw, PollInterval: time.Second}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatalf("newSource: %v", err)
			}
			if _, ok := src.(source.Reporter); !ok {
				t.Errorf("%T does not report Stats", src)
			}
		})
	}
}

func TestUnknownSchemeListsSQLSchemes(t *testing.T) {
	err := checkSourceURL("oracle://db/x")
	for _, s := range []string{"kamailio+sqlite", "kamailio+mysql", "kamailio+postgres", "opensips+sqlite", "opensips+mysql", "opensips+postgres"} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("error %v does not list %s", err, s)
		}
	}
}

// TestSQLSourceReadsServer goes from REGBRIDGE_SOURCE to contacts on the
// real servers: URL, endpoint, table and tz parameters, and
// REGBRIDGE_POLL_INTERVAL reach the adapter.
func TestSQLSourceReadsServer(t *testing.T) {
	servers := []struct {
		scheme string
		open   func(testing.TB) *sqltest.DB
		ddl    string
	}{
		{"kamailio+mysql", sqltest.MySQL, "CREATE TABLE loc (id INT, ruid VARCHAR(64), username VARCHAR(64), domain VARCHAR(64), contact VARCHAR(512), received VARCHAR(128), path VARCHAR(512), expires DATETIME, q FLOAT(10,2), callid VARCHAR(255), cseq INT, last_modified DATETIME, user_agent VARCHAR(255), instance VARCHAR(255), reg_id INT)"},
		{"kamailio+postgres", sqltest.Postgres, "CREATE TABLE loc (id INT, ruid VARCHAR(64), username VARCHAR(64), domain VARCHAR(64), contact VARCHAR(512), received VARCHAR(128), path VARCHAR(512), expires TIMESTAMP, q REAL, callid VARCHAR(255), cseq INT, last_modified TIMESTAMP, user_agent VARCHAR(255), instance VARCHAR(255), reg_id INT)"},
	}
	for _, srv := range servers {
		t.Run(srv.scheme, func(t *testing.T) {
			db := srv.open(t)
			db.Exec(t, srv.ddl)
			// 12:00 in Berlin (CET) is 11:00 UTC.
			db.Exec(t, `INSERT INTO loc (id, ruid, username, contact, expires, q, callid, cseq, last_modified, user_agent, reg_id)
				VALUES (1, 'uloc-1', 'alice', 'sip:alice@192.0.2.1', '2030-01-15 12:00:00', -1, 'c', 1, '2026-01-15 12:00:00', 'ua', 0)`)
			raw := fmt.Sprintf("%s://%s@%s/%s?table=loc&tz=Europe/Berlin", srv.scheme, db.Endpoint.User, db.Endpoint.Addr, db.Name())
			if srv.scheme == "kamailio+postgres" {
				raw += "&sslmode=disable"
			}
			src, err := newSource(&config{Source: raw, Domain: "example.com", PollInterval: 20 * time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			var (
				mu  sync.Mutex
				got []source.Contact
			)
			sink := sinkFunc(func(_ context.Context, b source.Batch) error {
				mu.Lock()
				defer mu.Unlock()
				got = append(got[:0], b.Contacts...)
				return nil
			})
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- src.Run(ctx, sink) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run = %v", err)
				}
			}()
			sourcetest.Eventually(t, "first batch", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(got) == 1
			})
			mu.Lock()
			c := got[0]
			mu.Unlock()
			if c.AOR != "sip:alice@example.com" || !c.Expires.Equal(time.Date(2030, 1, 15, 11, 0, 0, 0, time.UTC)) {
				t.Errorf("contact = %+v, want AOR with REGBRIDGE_DOMAIN and expiry decoded in Europe/Berlin", c)
			}
			// 20ms polls: five more well within a second (1s would take 5).
			rep := src.(source.Reporter)
			p := rep.Stats().Polls
			deadline := time.Now().Add(time.Second)
			for rep.Stats().Polls < p+5 {
				if time.Now().After(deadline) {
					t.Fatalf("only %d polls in a second: REGBRIDGE_POLL_INTERVAL not applied", rep.Stats().Polls-p)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

type sinkFunc func(ctx context.Context, b source.Batch) error

func (f sinkFunc) Apply(ctx context.Context, b source.Batch) error { return f(ctx, b) }
