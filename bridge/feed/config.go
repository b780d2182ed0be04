package feed

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Webhook defaults, each with its reason.
const (
	// DefaultWebhookQueue is how many events may wait per URL while the
	// receiver is slow or down: minutes of a busy registrar's changes,
	// a few hundred KiB of memory. Beyond it events are dropped and
	// counted; SIP never waits for a webhook.
	DefaultWebhookQueue = 1024
	// DefaultWebhookTimeout bounds one POST; a receiver slower than that
	// is treated as failing and retried.
	DefaultWebhookTimeout = 5 * time.Second
)

// Config is the webhooks' configuration (environment names without the
// REGBRIDGE_ prefix, read by cmd/regbridge).
type Config struct {
	URLs    []string      `env:"WEBHOOK_URLS" desc:"comma-separated http(s) URLs that receive each contact event as a signed JSON POST"`
	Secret  string        `env:"WEBHOOK_SECRET" desc:"HMAC-SHA256 key; each POST carries X-Regbridge-Signature: sha256=<hex of the body's HMAC>"`
	Queue   int           `env:"WEBHOOK_QUEUE, default=1024" desc:"events waiting per webhook URL before new ones are dropped (counted)"`
	Timeout time.Duration `env:"WEBHOOK_TIMEOUT, default=5s" desc:"time allowed for one webhook POST before it is retried"`
}

// Validate rejects nonsense, naming the variable. It never quotes a URL
// in full: one may carry credentials.
func (c *Config) Validate() error {
	var errs []error
	for i, raw := range c.URLs {
		if strings.TrimSpace(raw) == "" {
			continue
		}
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			errs = append(errs, fmt.Errorf("REGBRIDGE_WEBHOOK_URLS: URL %d is not a URL", i+1))
			continue
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("REGBRIDGE_WEBHOOK_URLS: URL %d (scheme %q): want http://host/... or https://host/...", i+1, u.Scheme))
		}
	}
	if c.Queue < 1 {
		errs = append(errs, fmt.Errorf("REGBRIDGE_WEBHOOK_QUEUE: %d must be at least 1", c.Queue))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("REGBRIDGE_WEBHOOK_TIMEOUT: must be positive"))
	}
	return errors.Join(errs...)
}

// targets returns the configured URLs, trimmed, without empty entries.
func (c *Config) targets() []string {
	var out []string
	for _, raw := range c.URLs {
		if s := strings.TrimSpace(raw); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (c *Config) setDefaults() {
	if c.Queue == 0 {
		c.Queue = DefaultWebhookQueue
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultWebhookTimeout
	}
}
