package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// File names [Write] gives a report.
const (
	JSONFile = "report.json"
	HTMLFile = "report.html"
)

// WriteJSON writes the report as indented JSON, the form of report.json.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("report: write json: %w", err)
	}
	return nil
}

// Write writes the report into dir as report.json and report.html, creating dir (mode
// 0755) if needed. Both are rendered first, then each is written to a temporary file in
// dir, synced and renamed into place, so a reader never sees a partial file and a
// failure leaves no temporary file behind. The files are created 0600: they describe
// what agents did, and the auditor decides whom to share them with.
func Write(dir string, r *Report) error {
	var js, page bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		return err
	}
	if err := r.WriteHTML(&page); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: create directory %s: %w", dir, err)
	}
	jsTemp, err := writeTemp(dir, JSONFile, js.Bytes())
	if err != nil {
		return err
	}
	pageTemp, err := writeTemp(dir, HTMLFile, page.Bytes())
	if err != nil {
		os.Remove(jsTemp)
		return err
	}
	for _, f := range []struct{ temp, name string }{{jsTemp, JSONFile}, {pageTemp, HTMLFile}} {
		if err := os.Rename(f.temp, filepath.Join(dir, f.name)); err != nil {
			os.Remove(jsTemp)
			os.Remove(pageTemp)
			return fmt.Errorf("report: write %s: %w", filepath.Join(dir, f.name), err)
		}
	}
	return nil
}

// writeTemp writes b to a new temporary file in dir for the file name, synced, and
// returns its path. On failure it removes it.
func writeTemp(dir, name string, b []byte) (path string, err error) {
	final := filepath.Join(dir, name)
	f, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("report: write %s: %w", final, err)
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	_, werr := f.Write(b)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return "", fmt.Errorf("report: write %s: %w", final, err)
	}
	return f.Name(), nil
}
