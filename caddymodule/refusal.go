package caddymodule

import (
	"errors"

	"github.com/sessiongate/caddy-session/internal/protocol"
)

// refusalOf classifies a refused upstream answer for
// caddy_session_upstream_refused_total{reason}.
func refusalOf(err error) refusal {
	var re revokeError
	if errors.As(err, &re) {
		return refusedSubject
	}
	var bad *protocol.BadInput
	if !errors.As(err, &bad) {
		return refusedOther
	}
	switch bad.Kind {
	case protocol.KindSize:
		return refusedSize
	case protocol.KindControl:
		return refusedControl
	}
	return refusedJSON
}
