package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/chaperone-dev/chaperone/internal/config"
)

// schemaComment is the first line of a configuration file that has editors with the
// YAML language server validate it against the schema beside it.
const schemaComment = "# yaml-language-server: $schema=./chaperone.schema.json"

// configSchema runs `chaperone config schema [--out FILE]`: it prints the JSON Schema of
// the configuration file, or writes it to FILE.
func configSchema(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("config schema", stderr)
	out := fs.String("out", "", "write the schema to this file instead of standard output")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: chaperone config schema [--out FILE]

Prints the JSON Schema (draft 2020-12) of the configuration file: every key, its type
and its documentation, the allowed values of enumerations, and no unknown keys.
Editors with the YAML language server (VS Code's YAML extension, Neovim, JetBrains, Helix)
check and complete chaperone.yaml when its first line is
  %s
`+"`chaperone config check`"+` remains the complete check: ranges and rules across fields.

`, schemaComment)
		fs.PrintDefaults()
	}
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	schema, err := config.Schema()
	if err != nil {
		return err
	}
	if *out == "" {
		_, err := stdout.Write(schema)
		return err
	}
	if err := os.WriteFile(*out, schema, 0o644); err != nil {
		return fmt.Errorf("write schema: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s\n", *out)
	return nil
}
