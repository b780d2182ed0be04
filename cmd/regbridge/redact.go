package main

import "net/url"

// redactURL hides a password in a store URL so it never reaches a log line.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
