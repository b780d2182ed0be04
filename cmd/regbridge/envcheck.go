package main

// Start-up checks of the environment that go-envconfig cannot make: a
// REGBRIDGE_* variable nobody reads (a misspelling that would otherwise
// silently leave the default in place), and values put in words an
// operator understands instead of Go's parse errors.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sethvargo/go-envconfig"
)

// testEnvPrefix marks variables the repository's own tests read
// (REGBRIDGE_TEST_LOG, REGBRIDGE_TEST_MYSQL, ...). They are not
// configuration, but a developer may have them set while a test starts
// the binary, so they are allowed.
const testEnvPrefix = envPrefix + "TEST_"

// nonConfigVars are REGBRIDGE_* names in use that are no configuration:
// docker-compose.example.yml has the operator export
// REGBRIDGE_DB_PASSWORD on the host to build REGBRIDGE_SOURCE from, so a
// shell that runs `regbridge cdc install` may well have it set.
var nonConfigVars = []string{envPrefix + "DB_PASSWORD"}

// environ is a Lookuper that can also list its variables, so that unknown
// ones can be found (the process environment in main; test lookupers need
// not implement it).
type environ interface {
	envconfig.Lookuper
	Environ() []string
}

// osEnv is the process environment.
type osEnv struct{ envconfig.Lookuper }

func (osEnv) Environ() []string { return os.Environ() }

// checkUnknownVars rejects REGBRIDGE_* variables that are no configuration
// variable, suggesting the nearest known name. The known names are those
// configVars derives from the configuration structs (as -h lists them).
func checkUnknownVars(environ []string) error {
	known := make([]string, 0, 64)
	for _, v := range configVars() {
		known = append(known, envPrefix+v.name)
	}
	var unknown []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || strings.HasPrefix(name, testEnvPrefix) ||
			slices.Contains(known, name) || slices.Contains(nonConfigVars, name) {
			continue
		}
		msg := name + " is not a regbridge variable"
		if near := nearest(name, known); near != "" {
			msg += "; did you mean " + near + "?"
		} else {
			msg += " (regbridge -h lists them)"
		}
		unknown = append(unknown, msg)
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return fmt.Errorf("%s", strings.Join(unknown, "\n"))
}

// nearest is the name in names closest to s by edit distance, or "" when
// none is close enough to be a plausible misspelling.
func nearest(s string, names []string) string {
	best, bestD := "", -1
	for _, n := range names {
		if d := editDistance(s, n); bestD < 0 || d < bestD {
			best, bestD = n, d
		}
	}
	// A third of the part after the prefix: LOGLEVEL, SOURCES and
	// POLL_INTREVAL are close; an unrelated name is not.
	if bestD < 0 || bestD > max(2, (len(s)-len(envPrefix))/3) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b (bytes; the
// names are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// accepted says in words what a variable of type t takes, for the types
// whose Go parse errors say nothing to an operator; "" for the others
// (their own Decode errors already say it).
func accepted(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "a duration with a unit, such as 1s or 500ms"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Int:
		return "a whole number, such as 10"
	case t.Kind() == reflect.Float64:
		return "a number, such as 5 or 0.5"
	}
	return ""
}

// valueError is the message for variable v set to a value go-envconfig
// could not parse, or "" when the type has no wording of its own.
func valueError(v configVar, l envconfig.Lookuper) string {
	words := accepted(v.typ)
	if words == "" {
		return ""
	}
	val, _ := l.Lookup(envPrefix + v.name)
	return fmt.Sprintf("%s%s: %q is not %s", envPrefix, v.name, val, words)
}

// checkHostPort checks a TCP listen address: host:port (host may be empty
// for every address), no scheme, a numeric port.
func checkHostPort(name, s string) error {
	want := "host:port, without a scheme, such as 127.0.0.1:9065 or :9065"
	if strings.Contains(s, "://") {
		return fmt.Errorf("%s: %q has a scheme; give %s", name, s, want)
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%s: %q is not %s", name, s, want)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%s: port %q is not a number from 0 to 65535; give %s", name, port, want)
	}
	return nil
}

// setupError is a start-up failure the operator fixes by changing the
// setup (a port in use, a wrong table): regbridge exits 2 with its
// message, as for a bad variable, instead of logging a crash.
type setupError struct{ err error }

func (e *setupError) Error() string { return e.err.Error() }
func (e *setupError) Unwrap() error { return e.err }

// asSetupError finds a setupError in err's chain.
func asSetupError(err error) (*setupError, bool) {
	var s *setupError
	ok := errors.As(err, &s)
	return s, ok
}

// listenError explains a listener that cannot open: which listener, which
// address, and what to do.
func listenError(variable, what string, err error) error {
	var fix string
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		fix = "another process (another regbridge, or the registrar itself?) already listens there: stop it or set " + variable + " to a free address"
	case errors.Is(err, syscall.EACCES):
		fix = "ports below 1024 need root or CAP_NET_BIND_SERVICE: use a higher port in " + variable
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		fix = "that IP address is not one of this machine's: fix " + variable
	default:
		fix = "fix " + variable
	}
	return &setupError{fmt.Errorf("%s: the %s listener cannot start: %w; %s", variable, what, err, fix)}
}
