package cookie

import (
	"net/http"
	"strings"
)

// Outcome says what the Cookie headers of a request held for the session
// cookie, so the gateway can act on it and count it.
type Outcome uint8

// Outcomes of TakeVerified.
const (
	// OutcomeNone: no cookie of our name.
	OutcomeNone Outcome = iota
	// OutcomeValid: exactly one token verified (the same value sent twice
	// counts once). Cookies of our name that did not verify are ignored.
	OutcomeValid
	// OutcomeInvalid: cookies of our name, none of which verified.
	OutcomeInvalid
	// OutcomeAmbiguous: two or more cookies of our name verified with
	// different tokens. The request has no session.
	OutcomeAmbiguous
)

// String returns "none", "valid", "invalid" or "ambiguous", fit for a
// metric label or a log field.
func (o Outcome) String() string {
	switch o {
	case OutcomeValid:
		return "valid"
	case OutcomeInvalid:
		return "invalid"
	case OutcomeAmbiguous:
		return "ambiguous"
	}
	return "none"
}

// TakeVerified removes every cookie called name from the Cookie headers of
// h, as Take does, and returns the token of the one whose signature s
// verifies.
//
// This is the defence against cookie tossing: anyone who can set a cookie
// on a parent domain (a sibling subdomain, a plain-HTTP page of the same
// host) can add cookies of our name to a victim's requests. A forged or
// stale cookie next to the real one does not verify and is ignored, so it
// cannot log the victim out. Only two cookies that both verify with
// different tokens (which needs a second real session, e.g. the tosser's
// own) are ambiguous, and then the request has no session rather than
// guessing. The __Host- cookie prefix (see Attributes) stops tossing in
// the browser altogether.
//
// A cookie of our name smuggled inside another cookie's pair with a comma
// or a space (see Take) is removed but never verified.
//
// With the token it returns the token's store key, Key(token).
func TakeVerified(h http.Header, name string, s *Signer) (token, key string, outcome Outcome) {
	scan(h, name, func(value string, usable bool) {
		if outcome == OutcomeNone {
			outcome = OutcomeInvalid
		}
		if !usable || outcome == OutcomeAmbiguous {
			return
		}
		tok, k, ok := s.VerifyKey(name, value)
		switch {
		case !ok:
		case outcome != OutcomeValid:
			token, key, outcome = tok, k, OutcomeValid
		case tok != token:
			token, key, outcome = "", "", OutcomeAmbiguous
		}
	})
	return token, key, outcome
}

// Take removes every cookie called name from the Cookie headers of h and
// returns how many there were and the value of the last well-formed one.
// The rest of the Cookie header is left as the client sent it. Removing
// the cookie keeps the session token away from the upstream application.
//
// Browsers separate cookies with "; ". Some server stacks also split on
// commas or spaces (PHP, Rack, Python's http.cookies), so a client-made
// "Cookie: x=1, session=<token>" would hand them the token inside what
// Go reads as the value of x. Such a pair (the whole "x=1, session=..."
// between semicolons) is removed too; it counts as a cookie of our name
// but its value is never returned: it is treated as no cookie.
func Take(h http.Header, name string) (count int, value string) {
	scan(h, name, func(v string, usable bool) {
		count++
		if usable {
			value = v
		}
	})
	return count, value
}

// TakeAll removes every cookie called name from the Cookie headers of h,
// as Take does, and returns the values of the well-formed ones in the
// order the client sent them. It serves cookies that are not ours to
// verify, such as a legacy session cookie being adopted.
func TakeAll(h http.Header, name string) []string {
	var values []string
	scan(h, name, func(v string, usable bool) {
		if usable {
			values = append(values, v)
		}
	})
	return values
}

// scan removes every cookie called name from the Cookie headers of h and
// calls found for each, in order: with its value and usable true for a
// plain "name=value" pair, with usable false for a pair that smuggles the
// name behind a comma or a space.
func scan(h http.Header, name string, found func(value string, usable bool)) {
	lines := h["Cookie"]
	if name == "" || len(lines) == 0 {
		return
	}
	// Lines are changed in place, in the header's own slice; the map is
	// written only when lines were removed.
	n := len(lines)
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if !strings.Contains(line, name) {
			continue // fast path: no copy of the header unless needed
		}
		kept, hit := filterLine(line, name, found)
		switch {
		case !hit:
		case kept == "":
			lines = append(lines[:i], lines[i+1:]...)
			i--
		default:
			lines[i] = kept
		}
	}
	switch {
	case len(lines) == n:
	case len(lines) == 0:
		delete(h, "Cookie")
	default:
		h["Cookie"] = lines
	}
}

// filterLine returns line without the pairs that carry name, and whether
// there were any.
func filterLine(line, name string, found func(string, bool)) (string, bool) {
	kept := make([]string, 0, 4)
	hit := false
	for part := range strings.SplitSeq(line, ";") {
		p := strings.TrimSpace(part)
		if p == "" {
			continue
		}
		if !strings.Contains(p, name) {
			kept = append(kept, p) // most pairs: no closer look needed
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		switch {
		case strings.TrimSpace(k) == name:
			found(strings.TrimSpace(v), true)
		case smuggles(p, name):
			found("", false)
		default:
			kept = append(kept, p)
			continue
		}
		hit = true
	}
	return strings.Join(kept, "; "), hit
}

// smuggles reports whether a cookie pair holds name as a cookie name for a
// parser that also splits on commas or white space: a word of p, split at
// those, that is name or starts with "name=".
func smuggles(p, name string) bool {
	for w := range strings.FieldsFuncSeq(p, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t'
	}) {
		if k, _, _ := strings.Cut(w, "="); k == name {
			return true
		}
	}
	return false
}
