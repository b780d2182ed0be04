package digest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regbridge/regbridge/source"
)

const (
	// fileRecheck is how often lookups look at the file's modification
	// time: an edited file takes effect within this long, without a stat
	// per SUBSCRIBE.
	fileRecheck = 5 * time.Second
	// maxFileSize refuses a file that cannot be a credentials file.
	maxFileSize = 16 << 20
)

// File reads credentials from a text file, one entry per line:
//
//	# comment; blank lines are ignored
//	alice:example.com:plain:s3cret:with:colons   password (rest of the line)
//	alice:example.com:md5:<32 hex digits>        HA1 = MD5(alice:example.com:password)
//	alice:example.com:sha-256:<64 hex digits>    HA1 = SHA-256(alice:example.com:password)
//	bob:example.com:<32 hex digits>              htdigest(1) line: an MD5 HA1
//
// A user may have several lines (an MD5 and a SHA-256 HA1). A plain
// password serves every algorithm; an HA1 only its own. The realm is the
// digest realm (REGBRIDGE_AUTH_REALM, or the From domain when that is
// empty). The file is re-read when it changes; a change that does not
// parse is logged (by line number, never content) and the previous
// entries stay in use.
type File struct {
	path string
	log  *slog.Logger
	now  func() time.Time

	entries atomic.Pointer[fileEntries] // rebuilt and swapped whole

	// reloadMu guards the fields below and serialises reloads.
	reloadMu sync.Mutex
	checked  time.Time
	modTime  time.Time
	size     int64
}

type fileKey struct{ user, realm string }

type fileEntry struct {
	password string
	ha1      map[Algorithm]string
}

type fileEntries map[fileKey]*fileEntry

var _ Credentials = (*File)(nil)

// OpenFile reads the credentials file at path.
func OpenFile(path string, log *slog.Logger) (*File, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &File{path: path, log: log, now: time.Now}
	if err := f.load(); err != nil {
		return nil, err
	}
	f.checked = f.now()
	return f, nil
}

// HA1 implements Credentials.
func (f *File) HA1(ctx context.Context, user, realm string, alg Algorithm) (string, bool, error) {
	f.maybeReload()
	e := (*f.entries.Load())[fileKey{user, realm}]
	if e == nil {
		return "", false, nil
	}
	if ha1, ok := e.ha1[alg]; ok {
		return ha1, true, nil
	}
	if e.password != "" {
		return HA1(alg, user, realm, e.password), true, nil
	}
	return "", false, nil
}

// maybeReload re-reads the file when it changed, at most every fileRecheck.
func (f *File) maybeReload() {
	f.reloadMu.Lock()
	defer f.reloadMu.Unlock()
	now := f.now()
	if now.Sub(f.checked) < fileRecheck {
		return
	}
	f.checked = now
	st, err := os.Stat(f.path)
	if err != nil {
		f.log.Warn("credentials file unreadable; keeping the entries read before", "path", f.path, "err", err)
		return
	}
	if st.ModTime().Equal(f.modTime) && st.Size() == f.size {
		return
	}
	if err := f.load(); err != nil {
		f.log.Warn("credentials file changed but does not parse; keeping the entries read before", "path", f.path, "err", err)
		return
	}
	f.log.Info("credentials file reloaded", "path", f.path, "entries", len(*f.entries.Load()))
}

// load reads and parses the file and swaps the entries in.
func (f *File) load() error {
	fh, err := os.Open(f.path)
	if err != nil {
		return fmt.Errorf("opening credentials file: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return fmt.Errorf("reading credentials file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("credentials file %s is not a regular file", f.path)
	}
	if st.Size() > maxFileSize {
		return fmt.Errorf("credentials file %s is larger than %d bytes", f.path, maxFileSize)
	}
	if st.Mode().Perm()&0o077 != 0 && f.entries.Load() == nil {
		f.log.Warn("credentials file is readable by group or others; chmod 600 it", "path", f.path, "mode", st.Mode().Perm().String())
	}
	data, err := io.ReadAll(io.LimitReader(fh, maxFileSize))
	if err != nil {
		return fmt.Errorf("reading credentials file: %w", err)
	}
	entries, err := parseFile(data)
	if err != nil {
		return fmt.Errorf("credentials file %s: %w", f.path, err)
	}
	f.entries.Store(&entries)
	f.modTime, f.size = st.ModTime(), st.Size()
	return nil
}

// parseFile parses the credentials file format. Errors name the line
// number and what is wrong, never the line: it holds a secret.
func parseFile(data []byte) (fileEntries, error) {
	entries := make(fileEntries)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxFileSize)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimRight(sc.Text(), "\r")
		if t := strings.TrimSpace(text); t == "" || t[0] == '#' {
			continue
		}
		user, realm, kind, value, err := splitLine(text)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		k := fileKey{user, realm}
		e := entries[k]
		if e == nil {
			e = &fileEntry{ha1: make(map[Algorithm]string)}
			entries[k] = e
		}
		if kind == "plain" {
			if e.password != "" {
				return nil, fmt.Errorf("line %d: a second password for %s in realm %s", line, user, realm)
			}
			e.password = value
			continue
		}
		alg, _ := ParseAlgorithm(kind)
		ha1, ok := normalizeHA1(alg, value)
		if !ok {
			return nil, fmt.Errorf("line %d: %s HA1 must be %d hex digits", line, alg, alg.hexLen())
		}
		if _, dup := e.ha1[alg]; dup {
			return nil, fmt.Errorf("line %d: a second %s HA1 for %s in realm %s", line, alg, user, realm)
		}
		e.ha1[alg] = ha1
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading: %w", err)
	}
	return entries, nil
}

// splitLine splits user:realm:kind:value, or htdigest's user:realm:ha1.
func splitLine(text string) (user, realm, kind, value string, err error) {
	parts := strings.SplitN(text, ":", 4)
	if len(parts) < 3 {
		return "", "", "", "", fmt.Errorf("want user:realm:plain:password, user:realm:md5:HA1, user:realm:sha-256:HA1 or user:realm:HA1")
	}
	user, realm = parts[0], parts[1]
	if user == "" || strings.ContainsAny(user, " \t") || !source.ValidHost(realm) {
		return "", "", "", "", fmt.Errorf("user must be non-empty without blanks and realm a domain name")
	}
	if len(parts) == 3 {
		return user, realm, "md5", parts[2], nil
	}
	switch kind = strings.ToLower(parts[2]); kind {
	case "plain":
		if parts[3] == "" {
			return "", "", "", "", fmt.Errorf("empty password")
		}
		return user, realm, kind, parts[3], nil
	case "md5", "sha-256":
		return user, realm, kind, parts[3], nil
	}
	return "", "", "", "", fmt.Errorf("kind must be plain, md5 or sha-256")
}
