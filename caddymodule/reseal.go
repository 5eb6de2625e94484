package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/cookie"
)

// resealer is implemented by store modules that seal sessions at rest
// (the MongoDB store with encryption_key): Reseal writes up to batch
// sessions not sealed under the first key again under it, after the
// session named by the handle after, and returns the handle to go on
// after ("" at the end). See mongostore.Store.Reseal.
type resealer interface {
	// Sealing reports whether the store seals sessions (it has keys).
	Sealing() bool
	Reseal(ctx context.Context, batch int, after string, now time.Time) (resealed, skipped int, next string, err error)
}

// defaultResealBatch is the batch of POST /session/reseal without ?batch.
const defaultResealBatch = 500

// adminResealed is the answer to POST /session/reseal.
type adminResealed struct {
	Resealed int `json:"resealed"`
	// Skipped counts sessions passed over: changed meanwhile (a write
	// sealed them anyway), or not opening (a key no longer configured,
	// or tampered with).
	Skipped int `json:"skipped"`
	// Next is the handle to pass as ?after= for the next batch; empty
	// when the store has been gone through.
	Next string `json:"next"`
}

// serveReseal answers POST /session/reseal[?batch=<n>][&after=<handle>]
// [&store=<name>]: one batch of the one store that seals sessions (or
// the one named).
func (a *adminSessions) serveReseal(r *http.Request, arg string) (any, error) {
	if arg != "" {
		return nil, apiError(http.StatusNotFound, "unknown session API path %q: use /session/reseal", r.URL.Path)
	}
	if r.Method != http.MethodPost {
		return nil, methodNotAllowed(r, "POST")
	}
	q := r.URL.Query()
	batch := defaultResealBatch
	if v := q.Get("batch"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return nil, apiError(http.StatusBadRequest, "batch must be a whole number from 1 to 1000, got %q", v)
		}
		batch = n
	}
	after := q.Get("after")
	if after != "" && !cookie.IsHandle(after) {
		return nil, apiError(http.StatusBadRequest, "after must be a session handle (12 lower-case hex digits), got %q", after)
	}
	var sealing []*storeInUse
	for _, ls := range storesInUse(q.Get("store")) {
		if ls.reseal != nil {
			sealing = append(sealing, ls)
		}
	}
	switch len(sealing) {
	case 0:
		return nil, apiError(http.StatusNotFound, "no session store in the running config seals sessions (store mongodb with encryption_key)")
	case 1:
	default:
		return nil, apiError(http.StatusBadRequest, "%d session stores seal sessions: name one with ?store=<database.collection>", len(sealing))
	}
	ls := sealing[0]
	resealed, skipped, next, err := ls.reseal.Reseal(r.Context(), batch, after, time.Now())
	if err != nil {
		return nil, storeAPIError(ls, err)
	}
	a.logger.Info("sessions resealed through the admin API", zap.String("store", ls.name),
		zap.Int("resealed", resealed), zap.Int("skipped", skipped), zap.String("next", next))
	return adminResealed{Resealed: resealed, Skipped: skipped, Next: next}, nil
}

func sessionResealCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "reseal [--batch <n>] [--store <database.collection>] [--address <interface>]",
		Short: "Seals every stored session under the first encryption key now",
		Long: `
Writes every live session of the MongoDB store that is not sealed under
the first encryption_key (sealed under an older key, or stored in the
clear before sealing was switched on) again under it, in batches, through
the admin API. Then the older keys can be dropped, or require_sealed
turned on, without waiting for a lifetime. Sessions keep their data,
version and times. Sessions that do not open (sealed under a key no
longer configured, or tampered with) are passed over and counted.
`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			batch, _ := c.Flags().GetInt("batch")
			if batch < 1 || batch > 1000 {
				return errors.New("--batch must be from 1 to 1000")
			}
			var total adminResealed
			for after := ""; ; {
				path := "/session/reseal?batch=" + strconv.Itoa(batch)
				if after != "" {
					path += "&after=" + url.QueryEscape(after)
				}
				body, err := adminCall(c, http.MethodPost, path)
				if err != nil {
					return err
				}
				var res adminResealed
				if err := json.Unmarshal(body, &res); err != nil {
					return fmt.Errorf("reading the admin API's answer: %v", err)
				}
				total.Resealed += res.Resealed
				total.Skipped += res.Skipped
				if res.Next == "" {
					break
				}
				after = res.Next
			}
			_, err := fmt.Fprintf(c.OutOrStdout(), "resealed %d session(s); passed over %d (changed meanwhile, or not opening: a key no longer configured, or tampered with)\n",
				total.Resealed, total.Skipped)
			return err
		},
	}
	c.Flags().Int("batch", defaultResealBatch, "Sessions per admin API call (1 to 1000)")
	adminFlags(c)
	return c
}
