package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/store"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "session",
		Usage: "list|revoke|reseal|gen-secret",
		Short: "Lists and revokes sessions of the running Caddy, makes signing secrets",
		Long: `
Works with the session gateway (the session handler) of a running Caddy
through its admin API (admin.api.session):

  caddy session list --subject alice
  caddy session list --subject-json 42
  caddy session revoke --subject alice
  caddy session revoke --id 0123456789ab
  caddy session reseal
  caddy session gen-secret

The admin address is --address if given, else the admin address of the
config given with --config, else Caddy's default (localhost:2019), as for
caddy reload.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(sessionListCommand(), sessionRevokeCommand(), sessionResealCommand(), sessionGenSecretCommand())
		},
	})
}

// adminFlags adds the flags that find the admin endpoint.
func adminFlags(c *cobra.Command) {
	c.Flags().StringP("address", "", "", "Address of the administration endpoint, if different from the config")
	c.Flags().StringP("config", "c", "", "Configuration file to read the admin address from")
	c.Flags().StringP("adapter", "a", "", "Name of the config adapter for --config")
	c.Flags().StringP("store", "", "", "Only the stores of this name (a memory store's name, a MongoDB store's database.collection)")
}

func sessionListCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "list --subject <subject> [--address <interface>] [--json]",
		Short: "Lists the live sessions of a subject",
		Long: `
Lists the live sessions whose subject (the handler's subject option) is
the given value: their handle (the id in X-Session-Meta), when they were
created and last used, and when they expire. Never a token or data.
`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			subject, err := subjectFlag(c)
			if err != nil {
				return err
			}
			if subject == "" {
				return errors.New("--subject or --subject-json is required")
			}
			body, err := adminCall(c, http.MethodGet, subjectPath(subject))
			if err != nil {
				return err
			}
			if asJSON, _ := c.Flags().GetBool("json"); asJSON {
				_, err = c.OutOrStdout().Write(body)
				return err
			}
			var list []adminSummary
			if err := json.Unmarshal(body, &list); err != nil {
				return fmt.Errorf("reading the admin API's answer: %v", err)
			}
			return printSessions(c.OutOrStdout(), list)
		},
	}
	c.Flags().StringP("subject", "s", "", "The subject whose sessions to list, a string (this or --subject-json is required)")
	c.Flags().String("subject-json", "", "The subject as a JSON value: 42 (a number), true, \"42\" (the string)")
	c.Flags().Bool("json", false, "Print the admin API's JSON answer")
	adminFlags(c)
	return c
}

func sessionRevokeCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "revoke --subject <subject> | --id <handle> [--address <interface>]",
		Short: "Ends all sessions of a subject, or one session by its handle",
		Long: `
Ends sessions at once: every session of a subject (--subject), or the one
session whose handle (the 12-hex-digit id in X-Session-Meta) is given
(--id). The next request with an ended session's cookie has no session.
Prints how many sessions were ended.
`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			subject, err := subjectFlag(c)
			if err != nil {
				return err
			}
			id, _ := c.Flags().GetString("id")
			var path string
			switch {
			case (subject == "") == (id == ""):
				return errors.New("give exactly one of --subject, --subject-json and --id")
			case subject != "":
				path = subjectPath(subject)
			default:
				if !cookie.IsHandle(id) {
					return fmt.Errorf("--id must be a session handle: 12 lower-case hex digits, got %q", id)
				}
				path = "/session/sessions/" + id
			}
			body, err := adminCall(c, http.MethodDelete, path)
			if err != nil {
				return err
			}
			var res adminRevoked
			if err := json.Unmarshal(body, &res); err != nil {
				return fmt.Errorf("reading the admin API's answer: %v", err)
			}
			_, err = fmt.Fprintf(c.OutOrStdout(), "revoked %d session(s)\n", res.Revoked)
			return err
		},
	}
	c.Flags().StringP("subject", "s", "", "End every session of this subject, a string")
	c.Flags().String("subject-json", "", "End every session of this subject, given as a JSON value: 42, true, \"42\"")
	c.Flags().String("id", "", "End the session with this handle")
	adminFlags(c)
	return c
}

func sessionGenSecretCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "gen-secret",
		Short: "Prints a new random signing secret or encryption key",
		Long: `
Prints a new secret for the session handler's secret option: 32 random
bytes, hex-encoded (64 characters). To rotate, put the new secret first
and keep the old one after it until the cookies it signed have expired.

The same form is a key for the MongoDB store's encryption_key and
subject_key options (run it once for each: they must differ).
`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(c.OutOrStdout(), newSecret())
			return err
		},
	}
}

// adminCall sends a request to the admin API found by c's flags and
// returns the answer's body. An error status becomes an error holding
// Caddy's message.
func adminCall(c *cobra.Command, method, path string) ([]byte, error) {
	flags := c.Flags()
	address, _ := flags.GetString("address")
	config, _ := flags.GetString("config")
	adapter, _ := flags.GetString("adapter")
	addr, err := caddycmd.DetermineAdminAPIAddress(address, nil, config, adapter)
	if err != nil {
		return nil, fmt.Errorf("finding the admin address: %v", err)
	}
	if name, _ := flags.GetString("store"); name != "" {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + "store=" + url.QueryEscape(name)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, path, nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 16<<20))
}

// printSessions writes a session listing as a table.
func printSessions(w io.Writer, list []adminSummary) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no live sessions")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCREATED\tUPDATED\tEXPIRES")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.ID, unixUTC(s.Created), unixUTC(s.Updated), unixUTC(s.Expires))
	}
	return tw.Flush()
}

func unixUTC(sec int64) string {
	return time.Unix(sec, 0).UTC().Format(time.RFC3339)
}

// subjectFlag is the subject given by --subject (a string, as it is) or
// --subject-json (any JSON value), spelled by store.CanonicalSubject as
// sessions store it: --subject-json 42 names the user whose id is the
// number 42, --subject 42 the one whose id is the string "42".
func subjectFlag(c *cobra.Command) (string, error) {
	plain, _ := c.Flags().GetString("subject")
	raw, _ := c.Flags().GetString("subject-json")
	if raw == "" {
		if strings.IndexByte(plain, 0) >= 0 {
			return "", errors.New("--subject holds NUL: no session has such a subject")
		}
		return plain, nil
	}
	if plain != "" {
		return "", errors.New("give one of --subject and --subject-json")
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return "", fmt.Errorf("--subject-json is not one JSON value: %q", raw)
	}
	s, err := store.CanonicalSubject(v)
	if err != nil {
		return "", fmt.Errorf("--subject-json: %v", err)
	}
	if s == "" {
		return "", errors.New("--subject-json: null or \"\" is no subject")
	}
	return s, nil
}

// subjectPath is the admin API path of subject, escaped so that any
// subject round-trips: "/" as %2F, and every "." as %2E, so "." and ".."
// are not dot-segments that path cleaning would remove.
func subjectPath(subject string) string {
	return "/session/subjects/" + strings.ReplaceAll(url.PathEscape(subject), ".", "%2E")
}
