package caddymodule

import (
	"errors"

	"github.com/sessiongate/caddy-session/internal/protocol"
)

// refusalOf classifies a refused upstream answer for
// caddy_session_upstream_refused_total{reason}.
func refusalOf(err error) refusal {
	var bad *protocol.BadInput
	if !errors.As(err, &bad) {
		return refusedOther
	}
	switch bad.Kind {
	case protocol.KindSize:
		return refusedSize
	case protocol.KindControl:
		return refusedControl
	case protocol.KindRevoke, protocol.KindSubject:
		return refusedSubject
	case protocol.KindForbidden:
		return refusedForbidden
	}
	return refusedJSON
}
