package caddymodule

import "strings"

// refusalOf classifies an error from protocol.Evaluate for
// caddy_session_upstream_refused_total{reason}.
//
// Bridge: package protocol exports no error kinds yet, so this reads the
// message. Replace it with errors.Is checks when protocol exports
// sentinels (e.g. ErrTooLarge, ErrControl); the reasons stay the same.
func refusalOf(err error) refusal {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "byte limit"):
		return refusedSize
	case strings.Contains(msg, "control directive"), strings.Contains(msg, "max-age"):
		return refusedControl
	case strings.Contains(msg, "subject"):
		return refusedSubject
	case strings.Contains(msg, "JSON"), strings.Contains(msg, "key"), strings.Contains(msg, "nested"),
		strings.Contains(msg, "update or patch"), strings.Contains(msg, "number"):
		return refusedJSON
	}
	return refusedOther
}
