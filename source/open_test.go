package source

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
)

type nopSource struct{ u *url.URL }

func (*nopSource) Run(context.Context, Sink) error { return nil }

// TestOpenDispatches: Open hands the parsed URL and options to the scheme
// registered for it (any case), and names the registered schemes when
// there is none.
func TestOpenDispatches(t *testing.T) {
	var got Options
	Register(Scheme{Name: "test+open", Open: func(u *url.URL, o Options) (Source, error) {
		got = o
		if u.Query().Has("bad") {
			return Built((*nopSource)(nil), errors.New("bad parameter"))
		}
		return &nopSource{u}, nil
	}})
	src, err := Open("TEST+open://host/x", Options{Domain: "example.com"})
	if err != nil || src.(*nopSource).u.Host != "host" || got.Domain != "example.com" || got.Log == nil {
		t.Fatalf("Open = %v, %v; options %+v", src, err, got)
	}
	if src, err := Open("test+open://host/x?bad", Options{}); src != nil || err == nil {
		t.Errorf("Open of a bad URL = %#v, %v; want nil and an error", src, err)
	}
	for raw, want := range map[string]string{
		"oracle://db/x": `unsupported scheme "oracle"; supported: `,
		"no-scheme":     `has no scheme; supported: `,
	} {
		if _, err := Open(raw, Options{}); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "test+open") {
			t.Errorf("Open(%q) = %v, want %q listing test+open", raw, err, want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Errorf("a scheme registered twice did not panic")
		}
	}()
	Register(Scheme{Name: "test+open", Open: func(*url.URL, Options) (Source, error) { return nil, nil }})
}
