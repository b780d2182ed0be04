package digest

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseFile(t *testing.T) {
	md5 := HA1(MD5, "alice", "example.com", "pw")
	sha := HA1(SHA256, "alice", "example.com", "pw")
	tests := []struct {
		name    string
		in      string
		wantErr string // "" for success
		check   func(t *testing.T, e fileEntries)
	}{
		{name: "every line form, comments, blanks, CRLF",
			in: "# users\r\n\r\nalice:example.com:md5:" + strings.ToUpper(md5) + "\r\n" +
				"alice:example.com:sha-256:" + sha + "\n" +
				"bob:example.com:plain:p:a:s:s\n" +
				"carol:example.com:" + HA1(MD5, "carol", "example.com", "c") + "\n",
			check: func(t *testing.T, e fileEntries) {
				a := e[fileKey{"alice", "example.com"}]
				if a == nil || a.ha1[MD5] != md5 || a.ha1[SHA256] != sha || a.password != "" {
					t.Errorf("alice = %+v", a)
				}
				if b := e[fileKey{"bob", "example.com"}]; b == nil || b.password != "p:a:s:s" {
					t.Errorf("bob = %+v", b)
				}
				if c := e[fileKey{"carol", "example.com"}]; c == nil || c.ha1[MD5] == "" {
					t.Errorf("carol (htdigest line) = %+v", c)
				}
			}},
		{name: "too few fields", in: "alice\n", wantErr: "line 1"},
		{name: "unknown kind", in: "# x\nalice:example.com:sha1:secretvalue\n", wantErr: "line 2: kind"},
		{name: "short HA1", in: "alice:example.com:md5:abc\n", wantErr: "line 1: MD5 HA1"},
		{name: "HA1 of the wrong algorithm", in: "alice:example.com:sha-256:" + md5 + "\n", wantErr: "line 1: SHA-256 HA1"},
		{name: "empty password", in: "alice:example.com:plain:\n", wantErr: "line 1: empty password"},
		{name: "second password", in: "a:example.com:plain:x\na:example.com:plain:y\n", wantErr: "line 2"},
		{name: "bad realm", in: "a:exa mple.com:plain:x\n", wantErr: "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := parseFile([]byte(tt.in))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, e)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			for _, secret := range []string{"secretvalue", "abc", md5} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows line content", err)
				}
			}
		})
	}
}

func TestFileCredentials(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "credentials")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("alice:example.com:plain:first-secret\nbob:example.com:md5:" + HA1(MD5, "bob", "example.com", "b") + "\n")
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	f, err := OpenFile(path, log)
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	f.now = clk.Now
	f.checked = clk.Now()
	if !strings.Contains(logBuf.String(), "readable by group or others") {
		t.Errorf("no warning for a 0644 credentials file; log: %s", logBuf.String())
	}
	lookups := []struct {
		user string
		alg  Algorithm
		want string
		ok   bool
	}{
		{"alice", SHA256, HA1(SHA256, "alice", "example.com", "first-secret"), true},
		{"alice", MD5, HA1(MD5, "alice", "example.com", "first-secret"), true},
		{"bob", MD5, HA1(MD5, "bob", "example.com", "b"), true},
		{"bob", SHA256, "", false}, // an MD5 HA1 cannot answer SHA-256
		{"mallory", MD5, "", false},
	}
	for _, l := range lookups {
		got, ok, err := f.HA1(t.Context(), l.user, "example.com", l.alg)
		if err != nil || ok != l.ok || got != l.want {
			t.Errorf("HA1(%s, %s) = %q, %v, %v; want %q, %v", l.user, l.alg, got, ok, err, l.want, l.ok)
		}
	}
	// An edit takes effect after the recheck interval; a broken edit
	// keeps the old entries.
	write("alice:example.com:plain:second-secret-longer\n")
	if got, _, _ := f.HA1(t.Context(), "alice", "example.com", MD5); got != HA1(MD5, "alice", "example.com", "first-secret") {
		t.Errorf("file re-read before the recheck interval")
	}
	clk.Advance(fileRecheck)
	if got, _, _ := f.HA1(t.Context(), "alice", "example.com", MD5); got != HA1(MD5, "alice", "example.com", "second-secret-longer") {
		t.Errorf("edited file not re-read")
	}
	write("alice:example.com:plain:third\nbroken line with secret-in-it\n")
	clk.Advance(fileRecheck)
	if got, _, _ := f.HA1(t.Context(), "alice", "example.com", MD5); got != HA1(MD5, "alice", "example.com", "second-secret-longer") {
		t.Errorf("broken edit replaced the entries")
	}
	if !strings.Contains(logBuf.String(), "line 2") {
		t.Errorf("broken edit not logged by line number; log: %s", logBuf.String())
	}
	for _, secret := range []string{"first-secret", "second-secret", "third", "secret-in-it"} {
		if strings.Contains(logBuf.String(), secret) {
			t.Errorf("log shows a secret %q: %s", secret, logBuf.String())
		}
	}
}

func TestOpenFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenFile(filepath.Join(dir, "missing"), testLog()); err == nil {
		t.Errorf("missing file opened")
	}
	if _, err := OpenFile(dir, testLog()); err == nil {
		t.Errorf("directory opened as a credentials file")
	}
}
