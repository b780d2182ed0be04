package redis

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// A source configured for one layout over bindings written in the other
// finds no key under its prefix, or keys it cannot decode, and would
// report an empty registrar without a word. Check tells the operator at
// start-up instead.

// maxCheckScans bounds the keys Check looks at (scanCount each), so that
// a start-up against a huge unrelated database stays quick.
const maxCheckScans = 50

// LayoutError says the bindings in Redis follow another layout than the
// configured one.
type LayoutError struct {
	Configured, Found Layout
	// Key is a key that shows it.
	Key string
}

func (e *LayoutError) Error() string {
	return fmt.Sprintf("the keys in Redis follow the %s layout (such as %q), not the %s layout configured", e.Found, logKey(e.Key), e.Configured)
}

// Advice is the source URL to use instead of u, without its password:
// the scheme and, for db_redis keys <table>:entry::<ruid>, a table that is
// not the default.
func (e *LayoutError) Advice(u *url.URL) string {
	if e.Found == LayoutGeneric {
		return SchemeRedis + "://" + u.Host + u.Path + "?layout=generic (with the password, if any)"
	}
	fix := SchemeKamailio + "://" + u.Host + u.Path
	if table, _, ok := strings.Cut(e.Key, ":entry::"); ok && table != DefaultTable {
		fix += "?table=" + strings.ReplaceAll(url.QueryEscape(table), "%3A", ":")
	}
	return fix + " (with the password, if any)"
}

// Check looks at the store once and returns a LayoutError when a key
// under the configured prefix holds the other layout's fields, or when
// there is none but keys of the other layout exist. Anything else,
// including a server that does not answer, is nil: Run retries it.
func (w *Watcher) Check(ctx context.Context) error {
	rdb := w.dial()
	defer rdb.Close()
	other, otherPattern := LayoutGeneric, globEscape(DefaultPrefix)+"*"
	if w.cfg.Layout == LayoutGeneric {
		other, otherPattern = LayoutKamailio, "*"+globEscape(kamailioEntryType)+"*"
	}
	key := firstHash(ctx, rdb, w.pattern)
	if key == "" {
		key = firstHash(ctx, rdb, otherPattern)
	}
	if key == "" {
		return nil
	}
	fields, err := rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return nil
	}
	if layoutOf(fields) == other {
		return &LayoutError{Configured: w.cfg.Layout, Found: other, Key: key}
	}
	return nil
}

// firstHash is the first hash key matching pattern, or "" (none, or the
// server did not answer).
func firstHash(ctx context.Context, rdb *goredis.Client, pattern string) string {
	var cursor uint64
	for range maxCheckScans {
		keys, next, err := rdb.ScanType(ctx, cursor, pattern, scanCount, "hash").Result()
		if err != nil {
			return ""
		}
		if len(keys) > 0 {
			return keys[0]
		}
		if next == 0 {
			return ""
		}
		cursor = next
	}
	return ""
}

// layoutOf says which layout a binding's fields follow, or "" when
// neither: Kamailio's db_redis writes the location table's columns
// (username, contact, ruid, ...), the generic layout aor and uri.
func layoutOf(fields map[string]string) Layout {
	_, user := fields["username"]
	_, contact := fields["contact"]
	_, aor := fields[fieldAOR]
	_, uri := fields[fieldURI]
	switch {
	case user && contact && !aor:
		return LayoutKamailio
	case aor && uri && !user:
		return LayoutGeneric
	}
	return ""
}

// problem explains err when retrying cannot fix it (the server refuses
// the credentials or the database number); ok is false for an outage.
func problem(err error) (explained string, ok bool) {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "NOAUTH"), strings.Contains(msg, "invalid password"):
		return "the server refuses the credentials (" + msg + "): fix the user and password in the source URL", true
	case strings.Contains(msg, "NOPERM"):
		return "the user may not read the bindings (" + msg + "): grant it +@read and the keys' pattern in the server's ACL", true
	case strings.Contains(msg, "DB index is out of range"):
		return "the database number does not exist on the server (" + msg + "): fix the /db part of the source URL", true
	}
	return "", false
}
