package caddymodule

import "sync"

// handlers are the provisioned session handlers of the running configs,
// for the admin API (and for tests, which move their clocks). A handler
// registers in Provision and leaves in Cleanup.
var handlers struct {
	sync.Mutex
	set map[*Handler]struct{}
}

func registerHandler(h *Handler) {
	handlers.Lock()
	defer handlers.Unlock()
	if handlers.set == nil {
		handlers.set = map[*Handler]struct{}{}
	}
	handlers.set[h] = struct{}{}
}

func unregisterHandler(h *Handler) {
	handlers.Lock()
	defer handlers.Unlock()
	delete(handlers.set, h)
}

// liveHandlers returns the registered handlers.
func liveHandlers() []*Handler {
	handlers.Lock()
	defer handlers.Unlock()
	out := make([]*Handler, 0, len(handlers.set))
	for h := range handlers.set {
		out = append(out, h)
	}
	return out
}
