package mongotest

import "strings"

// WithDatabase returns uri with its database (the path after the hosts)
// set to db, keeping the user info, the hosts and the options:
// WithDatabase("mongodb://h:1/?w=1", "app") is "mongodb://h:1/app?w=1".
func WithDatabase(uri, db string) string {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok {
		return uri
	}
	rest, query, hasQuery := strings.Cut(rest, "?")
	at := strings.LastIndex(rest, "@") + 1
	hosts, _, _ := strings.Cut(rest[at:], "/")
	out := scheme + "://" + rest[:at] + hosts + "/" + db
	if hasQuery {
		out += "?" + query
	}
	return out
}

// Hosts returns the host list of uri (host:port[,host:port...]).
func Hosts(uri string) string {
	_, rest, _ := strings.Cut(uri, "://")
	rest, _, _ = strings.Cut(rest, "?")
	rest = rest[strings.LastIndex(rest, "@")+1:]
	hosts, _, _ := strings.Cut(rest, "/")
	return hosts
}
