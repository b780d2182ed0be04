package digest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/regbridge/regbridge/source/sqlwatch"
)

// lookupTimeout bounds one credentials query: a SUBSCRIBE transaction
// must be answered well inside Timer F (32 s), and a store slower than
// this is better answered with 503 than waited for.
const lookupTimeout = 2 * time.Second

// Schema names the table layout an SQL store reads.
type Schema string

// The registrar schemas SQL understands.
const (
	// Kamailio auth_db `subscriber` (table version 7): username, domain,
	// password, ha1 = MD5(username:domain:password) and ha1b =
	// MD5(username@domain:domain:password). SHA-256 needs the password
	// column (Kamailio stores no SHA-256 HA1).
	Kamailio Schema = "kamailio"
	// OpenSIPS 3.x auth_db `subscriber` (table version 8): username,
	// domain, password, ha1 (MD5), ha1_sha256, ha1_sha512t256.
	OpenSIPS Schema = "opensips"
	// Asterisk res_pjsip realtime `ps_auths`: auth_type (userpass or md5),
	// username, password, md5_cred = MD5(username:realm:password), realm
	// (empty: Asterisk's default realm, taken to be ours).
	Asterisk Schema = "asterisk"
)

// SQLConfig configures an SQL credential store.
type SQLConfig struct {
	Schema Schema
	// Table defaults to subscriber (Kamailio, OpenSIPS) or ps_auths.
	Table string
	// IgnoreDomain matches the username alone, as auth_db use_domain=0
	// does; the default matches the domain column against the realm.
	IgnoreDomain bool
	// Dollar selects $1 placeholders (PostgreSQL) instead of ?.
	Dollar bool
}

// SQL reads digest credentials from a registrar's table through
// database/sql. It never writes.
type SQL struct {
	db    *sql.DB
	cfg   SQLConfig
	query string
}

var _ Credentials = (*SQL)(nil)

// NewSQL builds a store on db (which the caller owns and closes).
func NewSQL(db *sql.DB, cfg SQLConfig) (*SQL, error) {
	if cfg.Table == "" {
		cfg.Table = "subscriber"
		if cfg.Schema == Asterisk {
			cfg.Table = "ps_auths"
		}
	}
	if !sqlwatch.ValidIdent(cfg.Table) {
		return nil, fmt.Errorf("table %q is not an identifier ([A-Za-z_][A-Za-z0-9_]*)", cfg.Table)
	}
	p1, p2 := "?", "?"
	if cfg.Dollar {
		p1, p2 = "$1", "$2"
	}
	var cols []string
	switch cfg.Schema {
	case Kamailio:
		cols = []string{"username", "password", "ha1", "ha1b"}
	case OpenSIPS:
		cols = []string{"username", "password", "ha1", "ha1_sha256"}
	case Asterisk:
		cols = []string{"username", "auth_type", "password", "md5_cred", "realm"}
	default:
		return nil, fmt.Errorf("unknown schema %q (kamailio, opensips, asterisk)", cfg.Schema)
	}
	if cfg.Dollar {
		// PostgreSQL returns CHAR(n) columns (OpenSIPS's scripts use
		// them) blank-padded; as text they read as MySQL returns them.
		for i, c := range cols {
			cols[i] = c + "::text"
		}
	}
	q := "SELECT " + strings.Join(cols, ", ") + " FROM " + cfg.Table + " WHERE username = " + p1
	if cfg.Schema != Asterisk && !cfg.IgnoreDomain {
		q += " AND domain = " + p2
	}
	return &SQL{db: db, cfg: cfg, query: q}, nil
}

// Probe checks that the table and its columns exist, reading no row.
func (s *SQL) Probe(ctx context.Context) error {
	q, _, _ := strings.Cut(s.query, " WHERE ")
	rows, err := s.db.QueryContext(ctx, q+" WHERE 1 = 0")
	if err != nil {
		return fmt.Errorf("reading %s table %s: %w", s.cfg.Schema, s.cfg.Table, err)
	}
	defer rows.Close()
	return rows.Err()
}

// HA1 implements Credentials.
func (s *SQL) HA1(ctx context.Context, user, realm string, alg Algorithm) (string, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	if s.cfg.Schema == Asterisk {
		return s.asterisk(ctx, user, realm, alg)
	}
	// A username with a domain part (alice@example.com) is looked up by
	// its parts and answered from ha1b, as Kamailio's auth_db does.
	lookupUser, domain, hasDomain := user, realm, false
	if i := strings.LastIndexByte(user, '@'); i > 0 && s.cfg.Schema == Kamailio {
		lookupUser, domain, hasDomain = user[:i], user[i+1:], true
	}
	args := []any{lookupUser}
	if !s.cfg.IgnoreDomain {
		args = append(args, domain)
	}
	rows, err := s.db.QueryContext(ctx, s.query, args...)
	if err != nil {
		return "", false, fmt.Errorf("reading %s: %w", s.cfg.Table, err)
	}
	defer rows.Close()
	var password, ha1, ha1Other sql.NullString
	found := 0
	for rows.Next() {
		var n, p, h, o sql.NullString
		if err := rows.Scan(&n, &p, &h, &o); err != nil {
			return "", false, fmt.Errorf("reading %s: %w", s.cfg.Table, err)
		}
		// MySQL's default collations match 'ALICE' and 'alice ' to
		// 'alice'; a username is the exact string.
		if n.String != lookupUser {
			continue
		}
		if found++; found > 1 {
			// Two rows for one username (IgnoreDomain across domains):
			// picking one would let one domain's user stand for another.
			return "", false, nil
		}
		password, ha1, ha1Other = p, h, o
	}
	if err := rows.Err(); err != nil {
		return "", false, fmt.Errorf("reading %s: %w", s.cfg.Table, err)
	}
	if found == 0 {
		return "", false, nil
	}
	var stored string
	switch {
	case alg == MD5 && hasDomain:
		stored = ha1Other.String // ha1b
	case alg == MD5:
		stored = ha1.String
	case alg == SHA256 && s.cfg.Schema == OpenSIPS:
		stored = ha1Other.String // ha1_sha256
	}
	if v, ok := normalizeHA1(alg, stored); ok {
		return v, true, nil
	}
	if password.String != "" {
		return HA1(alg, user, realm, password.String), true, nil
	}
	return "", false, nil
}

// asterisk reads ps_auths rows of user: a row of our realm wins over one
// with an empty realm; two rows of equal standing are ambiguous and
// refused.
func (s *SQL) asterisk(ctx context.Context, user, realm string, alg Algorithm) (string, bool, error) {
	rows, err := s.db.QueryContext(ctx, s.query, user)
	if err != nil {
		return "", false, fmt.Errorf("reading %s: %w", s.cfg.Table, err)
	}
	defer rows.Close()
	type cand struct {
		ha1   string
		exact bool
	}
	var best []cand
	for rows.Next() {
		var name, authType, password, md5Cred, rowRealm sql.NullString
		if err := rows.Scan(&name, &authType, &password, &md5Cred, &rowRealm); err != nil {
			return "", false, fmt.Errorf("reading %s: %w", s.cfg.Table, err)
		}
		if name.String != user {
			continue // a case- or space-insensitive collation matched
		}
		exact := rowRealm.String == realm
		if !exact && rowRealm.String != "" {
			continue
		}
		var ha1 string
		switch strings.ToLower(authType.String) {
		case "", "userpass":
			if password.String != "" {
				ha1 = HA1(alg, user, realm, password.String)
			}
		case "md5":
			if alg == MD5 {
				ha1, _ = normalizeHA1(MD5, md5Cred.String)
			}
		}
		if ha1 == "" {
			continue
		}
		switch {
		case len(best) == 0 || exact && !best[0].exact:
			best = []cand{{ha1, exact}}
		case exact == best[0].exact:
			best = append(best, cand{ha1, exact})
		}
	}
	if err := rows.Err(); err != nil {
		return "", false, fmt.Errorf("reading %s: %w", s.cfg.Table, err)
	}
	if len(best) != 1 {
		return "", false, nil
	}
	return best[0].ha1, true, nil
}

// errUnsupported is wrapped by Open for a scheme it does not know.
var errUnsupported = errors.New("unsupported credential source")
