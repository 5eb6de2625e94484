package faults

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Upstream is the application behind the gateway in fault tests. It
// reports the session it received and answers with session headers the
// client asks for in the query:
//
//	n=<int>         X-Session-Patch: {"n":<int>}   (the client's counter)
//	inc=1           X-Session-Patch: {"n":<received n + 1>}
//	control=<word>  X-Session-Control: <word>      (destroy, regenerate)
//	hold=<ms>       wait before answering
//	trickle=<ms>    send the headers, flush, wait, then send the body
//
// The body is {"session":<X-Session>,"meta":<X-Session-Meta>}. When
// onHeaders is not nil, it is called for a trickle= request once the
// headers are flushed, before the wait.
func Upstream(onHeaders func(*http.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if ms, err := strconv.Atoi(q.Get("hold")); err == nil {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		if n := q.Get("n"); n != "" {
			if _, err := strconv.ParseInt(n, 10, 64); err != nil {
				http.Error(w, "bad n", http.StatusBadRequest)
				return
			}
			w.Header().Set("X-Session-Patch", `{"n":`+n+`}`)
		}
		if q.Has("inc") {
			s, _ := parseBody([]byte(`{"session":` + strconv.Quote(r.Header.Get("X-Session")) + `,"meta":"{}"}`))
			w.Header().Set("X-Session-Patch", `{"n":`+strconv.FormatInt(s.N+1, 10)+`}`)
		}
		if c := q.Get("control"); c != "" {
			w.Header().Set("X-Session-Control", c)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		if ms, err := strconv.Atoi(q.Get("trickle")); err == nil {
			w.(http.Flusher).Flush()
			if onHeaders != nil {
				onHeaders(r)
			}
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		json.NewEncoder(w).Encode(map[string]string{
			"session": r.Header.Get("X-Session"),
			"meta":    r.Header.Get("X-Session-Meta"),
		})
	})
}

// body is what Upstream answers.
type body struct {
	Session string `json:"session"`
	Meta    string `json:"meta"`
}

// parsedSession is the part of a session the load uses.
type parsedSession struct {
	N   int64 // the counter, 0 when absent
	New bool  // the gateway made a new, empty session for this request
}

func parseBody(b []byte) (parsedSession, bool) {
	var rep body
	if json.Unmarshal(b, &rep) != nil || rep.Session == "" {
		return parsedSession{}, false
	}
	var data struct {
		N int64 `json:"n"`
	}
	var meta struct {
		New bool `json:"new"`
	}
	if json.Unmarshal([]byte(rep.Session), &data) != nil || json.Unmarshal([]byte(rep.Meta), &meta) != nil {
		return parsedSession{}, false
	}
	return parsedSession{N: data.N, New: meta.New}, true
}

// ParseAnswer reads Upstream's answer body: the session's counter n (0
// when absent) and whether the gateway made a new session; ok is false
// when the body is not Upstream's answer.
func ParseAnswer(b []byte) (n int64, isNew, ok bool) {
	s, ok := parseBody(b)
	return s.N, s.New, ok
}
