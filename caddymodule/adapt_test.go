package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestAdapt")

// TestAdapt checks `caddy adapt` output for every Caddyfile form in
// testdata/adapt: each file is a Caddyfile, a line "----------", and the
// JSON it must adapt to. Run with -update to rewrite the JSON halves.
func TestAdapt(t *testing.T) {
	files, _ := filepath.Glob("testdata/adapt/*.txt")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			cf, want, ok := strings.Cut(string(b), "\n----------\n")
			if !ok {
				t.Fatal("no ---------- separator")
			}
			out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
			if err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, out, "", "\t"); err != nil {
				t.Fatal(err)
			}
			got := pretty.String() + "\n"
			if *update {
				if err := os.WriteFile(file, []byte(cf+"\n----------\n"+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("adapted JSON differs from the golden file (run go test -run TestAdapt -update to accept):\n%s", got)
			}
		})
	}
}
