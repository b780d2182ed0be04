package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

// composeFile is the shipped example deployment. The tests below read it
// with a YAML parser, so that they test what users copy, not a paraphrase.
const composeFile = "../../docker-compose.example.yml"

type composeService struct {
	Environment map[string]string `yaml:"environment"`
	Networks    map[string]struct {
		IPv4Address string `yaml:"ipv4_address"`
	} `yaml:"networks"`
}

// readCompose returns the regbridge service's environment and the fixed
// address of the kamailio service, the proxy regbridge must admit.
func readCompose(t *testing.T) (env map[string]string, proxy string) {
	t.Helper()
	raw, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	env = doc.Services["regbridge"].Environment
	proxy = doc.Services["kamailio"].Networks["default"].IPv4Address
	if len(env) == 0 || net.ParseIP(proxy) == nil {
		t.Fatalf("%s: want a regbridge service with an environment and a kamailio service with a fixed ipv4_address, got %v and %q", composeFile, env, proxy)
	}
	return env, proxy
}

// composeVar is a compose interpolation: ${VAR}, ${VAR:?message},
// ${VAR:-default} and their forms without the colon.
var composeVar = regexp.MustCompile(`\$\{(\w+)(?::?[?-][^}]*)?\}`)

// interpolate replaces every ${VAR...} in env with vars[VAR], as
// `docker compose` does with the operator's exported variables; a
// reference the test has no value for fails the test.
func interpolate(t *testing.T, env, vars map[string]string) map[string]string {
	t.Helper()
	out := make(map[string]string, len(env))
	for k, v := range env {
		out[k] = composeVar.ReplaceAllStringFunc(v, func(ref string) string {
			name := composeVar.FindStringSubmatch(ref)[1]
			val, ok := vars[name]
			if !ok {
				t.Fatalf("%s: %s refers to ${%s}, which the test has no value for", composeFile, k, name)
			}
			return val
		})
	}
	return out
}

// replaceIn replaces old with new in env[key], failing when old is not
// there: the example changed and the substitution below must follow.
func replaceIn(t *testing.T, env map[string]string, key, old, new string) {
	t.Helper()
	if !strings.Contains(env[key], old) {
		t.Fatalf("%s: %s = %q no longer contains %q", composeFile, key, env[key], old)
	}
	env[key] = strings.ReplaceAll(env[key], old, new)
}

// TestComposeExample runs regbridge with the environment
// docker-compose.example.yml gives it, against a MariaDB location table
// as the example's Kamailio writes it, and subscribes from another
// address than regbridge's own, as the kamailio container does: the
// example's policy must admit its proxy (it once answered 403).
//
// What differs from the containers, and why, one substitution each:
//   - ${REGBRIDGE_DB_PASSWORD} and ${REGBRIDGE_ADMIN_TOKEN}: test values,
//     as the operator exports them;
//   - REGBRIDGE_SOURCE: host mariadb:3306 becomes the local MariaDB
//     (127.0.0.1:3306), database kamailio a database of this test holding
//     Kamailio's location table, and the user regbridge a user of this
//     test (a shared server may run several tests), made with exactly the
//     grants the example's header gives regbridge;
//   - REGBRIDGE_SIP_LISTEN and REGBRIDGE_HTTP_LISTEN: 0.0.0.0:5065 and
//     0.0.0.0:9065 become free loopback ports (tests listen on loopback
//     only);
//   - the kamailio service's fixed address becomes 127.0.0.2, the source
//     the subscriber sends from;
//   - REGBRIDGE_OPEN_NETWORKS, unset in the example (default loopback, in
//     a container the container itself), becomes 127.0.0.1/32: on the
//     test host 127.0.0.2 is loopback too and must stay outside;
//   - TZ is left out: a Go process reads its zone once at start, and the
//     source URL's tz=UTC is what decodes the table's times.
func TestComposeExample(t *testing.T) {
	composed, proxy := readCompose(t)
	store := kamMySQL(t)
	var b [6]byte
	rand.Read(b[:])
	user, password := "rb_"+hex.EncodeToString(b[:]), "pw-"+hex.EncodeToString(b[:])
	store.db.Exec(t, fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", user, password))
	t.Cleanup(func() {
		if _, err := store.db.TryExec(fmt.Sprintf("DROP USER '%s'@'%%'", user)); err != nil {
			t.Errorf("dropping MariaDB user %s: %v", user, err)
		}
	})
	store.db.Exec(t, fmt.Sprintf("GRANT SELECT ON %s.location TO '%s'@'%%'", store.db.Name(), user))
	store.db.Exec(t, fmt.Sprintf("GRANT DELETE ON %s.location TO '%s'@'%%'", store.db.Name(), user))

	env := interpolate(t, composed, map[string]string{"REGBRIDGE_DB_PASSWORD": password, "REGBRIDGE_ADMIN_TOKEN": e2eToken})
	src, err := url.Parse(env["REGBRIDGE_SOURCE"])
	if err != nil || src.Host != "mariadb:3306" || src.Path != "/kamailio" || src.User.Username() != "regbridge" {
		t.Fatalf("%s: REGBRIDGE_SOURCE = %q, want regbridge@mariadb:3306/kamailio (%v)", composeFile, env["REGBRIDGE_SOURCE"], err)
	}
	src.Host, src.Path, src.User = sqltest.MySQLAddr, "/"+store.db.Name(), url.UserPassword(user, password)
	env["REGBRIDGE_SOURCE"] = src.String()
	sipPort, httpPort := freePort(t), freePort(t)
	s := &server{sip: fmt.Sprintf("127.0.0.1:%d", sipPort), http: fmt.Sprintf("127.0.0.1:%d", httpPort), log: &syncBuffer{}}
	replaceIn(t, env, "REGBRIDGE_SIP_LISTEN", "0.0.0.0:5065", s.sip)
	replaceIn(t, env, "REGBRIDGE_HTTP_LISTEN", "0.0.0.0:9065", s.http)
	const subscriberIP = "127.0.0.2"
	replaceIn(t, env, "REGBRIDGE_TRUSTED_NETWORKS", proxy, subscriberIP)
	if v, ok := env["REGBRIDGE_OPEN_NETWORKS"]; ok {
		t.Fatalf("%s: REGBRIDGE_OPEN_NETWORKS = %q: the test assumes the default (loopback)", composeFile, v)
	}
	env["REGBRIDGE_OPEN_NETWORKS"] = "127.0.0.1/32"
	delete(env, "TZ")
	watcher, _, _ := strings.Cut(env["REGBRIDGE_WATCHERS"], ",")
	if watcher == "" {
		t.Fatalf("%s: no REGBRIDGE_WATCHERS for the proxy's identity", composeFile)
	}

	// A contact as Kamailio's db_mysql writes it, in UTC as the example's
	// containers run.
	utc := func(d time.Duration) string { return time.Now().UTC().Add(d).Format(time.DateTime) }
	store.db.Exec(t, `INSERT INTO location (ruid, username, domain, contact, expires, q, callid, cseq, last_modified, user_agent)
		VALUES ('uloc-c1', 'alice', 'example.com', 'sip:alice@192.0.2.10:5060', ?, -1, 'compose-1', 1, ?, 'phone')`, utc(time.Hour), utc(0))
	s.run(t, mapEnv(env))
	aor := "sip:alice@example.com"

	// Without an asserted identity the proxy's address proves nothing:
	// the subscriber really is outside the open networks.
	anon := siptest.New(t, "udp", s.sip, siptest.WithSource(subscriberIP))
	if res := anon.Subscribe(aor, siptest.Header("Event", "reg")); res.StatusCode != 403 {
		t.Fatalf("SUBSCRIBE from %s without P-Asserted-Identity: %d %s, want 403", subscriberIP, res.StatusCode, res.Reason)
	}

	p := siptest.New(t, "udp", s.sip, siptest.WithSource(subscriberIP))
	res := p.Subscribe(aor, siptest.Header("Event", "reg"), siptest.Header("Accept", "application/reginfo+xml"),
		siptest.Header("P-Asserted-Identity", "<"+watcher+">"))
	if res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE from the proxy (%s asserting %s): %d %s", subscriberIP, watcher, res.StatusCode, res.Reason)
	}
	n := p.Next()
	p.Check(n, 0, "full", "active;expires=")
	if c := contactOf(t, n); c.URI != "sip:alice@192.0.2.10:5060" || c.State != "active" {
		t.Fatalf("full state: %s", n.Req.Body())
	}
	if !strings.HasPrefix(p.Local(), subscriberIP+":") {
		t.Fatalf("the subscriber listens on %s, not %s", p.Local(), subscriberIP)
	}
	store.db.Exec(t, `DELETE FROM location WHERE ruid = 'uloc-c1'`)
	n = p.Next()
	p.Check(n, 1, "partial", "active")
	if c := contactOf(t, n); c.Event != "unregistered" || c.State != "terminated" {
		t.Fatalf("unregistered: %s", n.Req.Body())
	}
	if code := s.stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	p.Check(p.Next(), 2, "full", "terminated;reason=deactivated")
}

// TestWarnNoRemoteWatcher: SIP listening beyond loopback with a policy
// that admits nobody from another host is said once at start-up, naming
// the variables to set; the shipped example's policy says nothing.
func TestWarnNoRemoteWatcher(t *testing.T) {
	composed, _ := readCompose(t)
	example := interpolate(t, composed, map[string]string{"REGBRIDGE_DB_PASSWORD": "x", "REGBRIDGE_ADMIN_TOKEN": e2eToken})
	withoutPolicy := maps.Clone(example)
	delete(withoutPolicy, "REGBRIDGE_TRUSTED_NETWORKS")
	delete(withoutPolicy, "REGBRIDGE_WATCHERS")
	tests := []struct {
		name string
		env  map[string]string
		warn bool
	}{
		{"the example", example, false},
		{"the example without its policy", withoutPolicy, true},
		{"open networks beyond loopback", merge(withoutPolicy, map[string]string{"REGBRIDGE_OPEN_NETWORKS": "10.0.0.0/8"}), false},
		{"digest logins", merge(withoutPolicy, map[string]string{"REGBRIDGE_AUTH": "file:///etc/regbridge/credentials"}), false},
		{"a proxy on loopback is no remote watcher", merge(withoutPolicy, map[string]string{"REGBRIDGE_TRUSTED_NETWORKS": "127.0.0.2"}), true},
		{"loopback listener", merge(withoutPolicy, map[string]string{"REGBRIDGE_SIP_LISTEN": "udp://127.0.0.1:5065,tcp://[::1]:5065,ws://localhost:8080"}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(t.Context(), mapEnv(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			warnNoRemoteWatcher(cfg, slog.New(slog.NewTextHandler(&out, nil)))
			if got := strings.Count(out.String(), "level=WARN"); got != map[bool]int{true: 1}[tt.warn] {
				t.Fatalf("%d warnings, want warn=%v:\n%s", got, tt.warn, out.String())
			}
			for _, name := range []string{"REGBRIDGE_TRUSTED_NETWORKS", "REGBRIDGE_WATCHERS", "REGBRIDGE_AUTH", "REGBRIDGE_OPEN_NETWORKS"} {
				if tt.warn && !strings.Contains(out.String(), name) {
					t.Errorf("the warning does not name %s: %s", name, out.String())
				}
			}
		})
	}

	// Started as the binary starts, with every address for SIP. The test
	// opens no socket beyond loopback: it holds the port on 127.0.0.1, so
	// that binding 0.0.0.0 fails right after the configuration is read,
	// and start-up stops with the log written.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	env := map[string]string{
		"REGBRIDGE_SOURCE":      "kamailio+sqlite://" + t.TempDir() + "/location.db?create=true",
		"REGBRIDGE_SIP_LISTEN":  fmt.Sprintf("tcp://0.0.0.0:%d", ln.Addr().(*net.TCPAddr).Port),
		"REGBRIDGE_HTTP_LISTEN": fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}
	var log syncBuffer
	if code := run(t.Context(), nil, mapEnv(env), &log, &log); code != 2 {
		t.Fatalf("exit %d, want 2, a setup error (SIP port held by the test):\n%s", code, log.String())
	}
	if got := strings.Count(log.String(), "level=WARN msg=\"SIP listens beyond loopback"); got != 1 {
		t.Fatalf("%d start-up warnings, want 1:\n%s", got, log.String())
	}
}

// merge returns a copy of base with extra's entries set.
func merge(base, extra map[string]string) map[string]string {
	out := maps.Clone(base)
	maps.Copy(out, extra)
	return out
}
