package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/daemon"
)

// compileSchema compiles a configuration schema document.
func compileSchema(tb testing.TB, raw []byte) *jsonschema.Schema {
	tb.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		tb.Fatalf("schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("mem:///chaperone.schema.json", doc); err != nil {
		tb.Fatal(err)
	}
	sch, err := c.Compile("mem:///chaperone.schema.json")
	if err != nil {
		tb.Fatalf("compile schema: %v", err)
	}
	return sch
}

// validateYAML validates one YAML document against sch, as an editor would: as the JSON
// value of its data.
func validateYAML(tb testing.TB, sch *jsonschema.Schema, data []byte) error {
	tb.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		tb.Fatalf("not YAML: %v", err)
	}
	b, err := json.Marshal(jsonData(tb, v))
	if err != nil {
		tb.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	return sch.Validate(doc)
}

// jsonData turns what yaml.v3 decodes into `any` into JSON data.
func jsonData(tb testing.TB, v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonData(tb, e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = jsonData(tb, e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonData(tb, e)
		}
		return out
	case time.Time:
		return x.Format(time.RFC3339Nano)
	}
	return v
}

func TestConfigSchemaPrints(t *testing.T) {
	want, err := config.Schema()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := configSchema(nil, &stdout, &stderr); err != nil {
		t.Fatalf("configSchema() = %v (stderr %q)", err, stderr.String())
	}
	if !bytes.Equal(stdout.Bytes(), want) {
		t.Errorf("configSchema() printed something other than config.Schema()")
	}
	compileSchema(t, stdout.Bytes())
}

func TestConfigSchemaOut(t *testing.T) {
	out := filepath.Join(t.TempDir(), "chaperone.schema.json")
	var stdout, stderr bytes.Buffer
	if err := configSchema([]string{"--out", out}, &stdout, &stderr); err != nil {
		t.Fatalf("configSchema(--out) = %v", err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := config.Schema()
	if !bytes.Equal(got, want) {
		t.Errorf("--out wrote something other than config.Schema()")
	}
	if s := stdout.String(); s != "wrote "+out+"\n" {
		t.Errorf("configSchema(--out) printed %q, want %q", s, "wrote "+out+"\n")
	}
}

func TestConfigSchemaErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no", "such", "dir", "schema.json")
	for _, tc := range []struct {
		name      string
		args      []string
		wantUsage bool
		want      string
	}{
		{"an argument", []string{"extra"}, true, `unexpected argument "extra"`},
		{"unknown flag", []string{"--output", "x"}, true, "output"},
		{"unwritable file", []string{"--out", missing}, false, "write schema"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := configSchema(tc.args, &stdout, &stderr)
			var ue usageError
			if err == nil || errors.As(err, &ue) != tc.wantUsage || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("configSchema(%q) = %v, want an error containing %q (usage error: %v)", tc.args, err, tc.want, tc.wantUsage)
			}
			if stdout.Len() > 0 {
				t.Errorf("configSchema(%q) printed %q on failure", tc.args, stdout.String())
			}
		})
	}
}

func TestConfigSchemaHelpNamesEditorComment(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := configSchema([]string{"-h"}, &stdout, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("configSchema(-h) = %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(stderr.String(), "# yaml-language-server: $schema=./chaperone.schema.json") {
		t.Errorf("help does not show the editor comment:\n%s", stderr.String())
	}
}

// TestConfigSchemaValidatesEffectiveConfigs validates what the gateway itself writes as
// YAML: the demo's configuration, and the effective configuration `config check` prints.
func TestConfigSchemaValidatesEffectiveConfigs(t *testing.T) {
	raw, err := config.Schema()
	if err != nil {
		t.Fatal(err)
	}
	sch := compileSchema(t, raw)

	d, err := daemon.DemoConfig(t.TempDir(), "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	demo, err := d.Config.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := validateYAML(t, sch, demo); err != nil {
		t.Errorf("the schema refuses the demo configuration: %v\n%s", err, demo)
	}

	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if err := initCmd([]string{"--preset", "mail-and-payments", "--dir", dir}, io.Discard, &stderr); err != nil {
		t.Fatal(err)
	}
	if err := configCheck([]string{"--config", filepath.Join(dir, "chaperone.yaml")}, &stdout, &stderr); err != nil {
		t.Fatalf("config check = %v", err)
	}
	if err := validateYAML(t, sch, stdout.Bytes()); err != nil {
		t.Errorf("the schema refuses the effective configuration config check prints: %v\n%s", err, stdout.String())
	}
}

func TestConfigSchemaRefusesMistakes(t *testing.T) {
	raw, err := config.Schema()
	if err != nil {
		t.Fatal(err)
	}
	sch := compileSchema(t, raw)
	for _, doc := range []string{
		"upstreams: [{name: files, comand: npx}]\n",
		"server: {max_sessions: many}\n",
		"registry: {first_use: always}\n",
	} {
		if err := validateYAML(t, sch, []byte(doc)); err == nil {
			t.Errorf("the schema accepts %q", doc)
		}
	}
}
