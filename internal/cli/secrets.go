package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/secrets"
)

// secretsSet stores a secret through the admin API. The value comes from standard
// input, a file or an environment variable, never from an argument: an argument stays
// in the shell's history and shows in ps.
func secretsSet(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("secrets set", stderr)
	client := adminFlags(fs)
	fromFile := fs.String("from-file", "", "read the value from this file (one trailing newline removed)")
	fromEnv := fs.String("from-env", "", "read the value from this environment variable")
	description := fs.String("description", "", "what the secret is for (at most 200 bytes; never the value)")
	by := fs.String("by", defaultBy(), "who sets it (recorded in the audit log)")
	// Positional arguments are counted here, not by parse, whose error would quote the
	// extra one: a value typed where it does not belong.
	if err := parse(fs, reorder(fs, args), len(args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"give exactly one NAME: chaperone secrets set NAME [--from-file F | --from-env VAR] [--description S]; " +
			"the value is never taken as an argument (shell history and ps would show it): pipe it on standard input"}
	}
	name := fs.Arg(0)
	if err := secrets.CheckName(name); err != nil {
		return usageError{err.Error()}
	}
	if *fromFile != "" && *fromEnv != "" {
		return usageError{"give at most one of --from-file and --from-env"}
	}
	value, err := secretValue(ctx, name, *fromFile, *fromEnv, stdin, stderr)
	if err != nil {
		return err
	}
	defer clear(value)
	if !utf8.Valid(value) {
		return fmt.Errorf("the value of %s is not valid UTF-8: the admin API carries secrets as text", name)
	}
	c, err := client()
	if err != nil {
		return err
	}
	body := map[string]string{"value": string(value), "description": *description}
	if *by != "" {
		body["by"] = *by
	}
	var m secrets.Meta
	if err := c.do(ctx, http.MethodPut, "/v1/secrets/"+url.PathEscape(name), body, &m); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "secret %s set: version %d, sealed with key %s\n", m.Name, m.Version, m.KeyID)
	return nil
}

// secretValue reads the value to set: from the file, the variable, or else standard
// input, with one trailing newline removed. Errors never hold the value.
func secretValue(ctx context.Context, name, file, env string, stdin io.Reader, stderr io.Writer) ([]byte, error) {
	var ref secrets.Ref
	switch {
	case file != "":
		abs, err := filepath.Abs(file)
		if err != nil {
			return nil, fmt.Errorf("--from-file: %w", err)
		}
		ref = secrets.Ref{Kind: secrets.RefFile, Target: abs}
	case env != "":
		ref = secrets.Ref{Kind: secrets.RefEnv, Target: env}
	default:
		if isTerminal(stdin) {
			fmt.Fprintf(stderr, "Type the value of secret %s, then press Ctrl-D on a line of its own.\n"+
				"It shows as you type; to avoid that, pipe it in: chaperone secrets set %s < FILE\n", name, name)
		}
		b, err := io.ReadAll(io.LimitReader(stdin, secrets.MaxValue+3)) // room for "\r\n"
		if err != nil {
			return nil, fmt.Errorf("read the value from standard input: %w", err)
		}
		b = secrets.TrimNewline(b)
		switch {
		case len(b) > secrets.MaxValue:
			clear(b)
			return nil, fmt.Errorf("the value on standard input is more than %d bytes", secrets.MaxValue)
		case len(b) == 0:
			return nil, usageError{"the value on standard input is empty: pipe it in, or use --from-file F or --from-env VAR"}
		}
		return b, nil
	}
	v, err := secrets.Resolve(ctx, ref, nil)
	if err != nil {
		return nil, err
	}
	return v.Bytes(), nil
}

func secretsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := connect("secrets list", args, stderr)
	if err != nil {
		return err
	}
	var list api.SecretList
	if err := c.do(ctx, http.MethodGet, "/v1/secrets", nil, &list); err != nil {
		return err
	}
	if len(list.Secrets) == 0 {
		fmt.Fprintln(stdout, "no secrets stored")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tKEY\tUPDATED\tBY\tDESCRIPTION")
	for _, m := range list.Secrets {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", m.Name, m.Version, m.KeyID, formatTime(m.Updated), m.UpdatedBy, dash(m.Description))
	}
	return tw.Flush()
}

func secretsDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("secrets delete", stderr)
	client := adminFlags(fs)
	by := fs.String("by", defaultBy(), "who deletes it (recorded in the audit log)")
	if err := parse(fs, reorder(fs, args), 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"give the secret's name: chaperone secrets delete NAME"}
	}
	name := fs.Arg(0)
	if err := secrets.CheckName(name); err != nil {
		return usageError{err.Error()}
	}
	c, err := client()
	if err != nil {
		return err
	}
	path := "/v1/secrets/" + url.PathEscape(name)
	if *by != "" {
		path += "?" + url.Values{"by": {*by}}.Encode()
	}
	if err := c.do(ctx, http.MethodDelete, path, nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "secret %s deleted\n", name)
	return nil
}

func secretsRotate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("secrets rotate", stderr)
	client := adminFlags(fs)
	by := fs.String("by", defaultBy(), "who rotates (recorded in the audit log)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	body := map[string]string{}
	if *by != "" {
		body["by"] = *by
	}
	var res secrets.RotateResult
	if err := c.do(ctx, http.MethodPost, "/v1/secret-keys/rotate", body, &res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "every secret is under key %s: %d re-encrypted, %d already under it, %d deleted meanwhile\n",
		res.Primary, res.Reencrypted, res.Current, res.Skipped)
	fmt.Fprintln(stdout, "once every replica has rotated, the other keys may be removed from the key file")
	return nil
}

// secretsKeygen prints a new key file line. It makes no API call: the key goes into the
// key file, never through the network.
func secretsKeygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("secrets keygen", stderr)
	id := fs.String("id", "", "the new key's id, [a-z0-9][a-z0-9_-]{0,31}; required")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *id == "" {
		return usageError{"--id is required: chaperone secrets keygen --id ID"}
	}
	line, err := secrets.GenerateKey(*id)
	if err != nil {
		return usageError{err.Error()}
	}
	fmt.Fprintln(stdout, line)
	fmt.Fprintf(stderr, "Put this line first in the key file (mode 0600) to make %s the primary key, keep the old keys\n"+
		"below it, reload the gateway, then run `chaperone secrets rotate`; remove old keys only after that.\n", *id)
	return nil
}
