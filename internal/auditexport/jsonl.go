package auditexport

import (
	"bufio"
	"context"
	"fmt"
	"io"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// scanPage is how many events an export reads at a time. Small, because an event may
// carry up to two captured values of audit.capture_max_bytes each.
const scanPage = 100

// Stats says what an export wrote and what it left out.
type Stats struct {
	// Written counts the events written.
	Written int
	// Tombstones counts the events the filter's range, seq and kinds select whose content
	// retention removed (see [audit.Event].Pruned): they are not written.
	Tombstones int
	// Redacted counts the events written with at least one secret redacted.
	Redacted int
	// LastSeq is the seq of the last event read, selected or not; pass it as
	// [Filter].After to continue later.
	LastSeq int64
}

// exportLine renders one selected event, already redacted, as one line without its
// newline. redacted says whether anything was redacted.
type exportLine func(buf []byte, e *audit.Event, redacted bool) ([]byte, error)

// export reads src after f.After and writes one line per event f selects, rendered by
// render after redaction. Tombstones are skipped and counted.
func export(ctx context.Context, src audit.Source, w io.Writer, f Filter, format string, render exportLine) (Stats, error) {
	st := Stats{LastSeq: f.After}
	if err := f.Validate(); err != nil {
		return st, fmt.Errorf("export %s: filter: %w", format, err)
	}
	r := NewRedactor()
	bw := bufio.NewWriter(w)
	var line []byte
	read := 0
	for {
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("export %s: %w", format, err)
		}
		evs, err := src.ScanEvents(ctx, st.LastSeq, scanPage)
		if err != nil {
			return st, fmt.Errorf("export %s: read audit log after event %d: %w", format, st.LastSeq, err)
		}
		if len(evs) == 0 {
			break
		}
		for i := range evs {
			e := &evs[i]
			if e.Seq <= st.LastSeq {
				return st, fmt.Errorf("export %s: audit log returned event %d after event %d", format, e.Seq, st.LastSeq)
			}
			st.LastSeq = e.Seq
			if e.Pruned {
				if f.matchKept(e) {
					st.Tombstones++
				}
				continue
			}
			if !f.Match(e) {
				continue
			}
			red, n := r.Event(e)
			if line, err = render(line[:0], &red, n > 0); err != nil {
				return st, fmt.Errorf("export %s: event %d: %w", format, e.Seq, err)
			}
			line = append(line, '\n')
			if _, err := bw.Write(line); err != nil {
				return st, fmt.Errorf("export %s: write: %w", format, err)
			}
			st.Written++
			if n > 0 {
				st.Redacted++
			}
		}
		if read += len(evs); f.Progress != nil {
			f.Progress(read, st.Written)
		}
	}
	if err := bw.Flush(); err != nil {
		return st, fmt.Errorf("export %s: write: %w", format, err)
	}
	if f.Progress != nil {
		f.Progress(read, st.Written)
	}
	return st, nil
}

// WriteJSONL writes the events of src that f selects to w, one JSON object per line,
// in log order, and returns what it wrote.
//
// An event in which nothing was redacted is written as its canonical record
// ([audit.Event.MarshalRecord]): the bytes its hash covers. An event in which a secret
// was redacted (see [Redactor.Event]) is written with the secrets replaced and an
// added last field "export_redacted":true; its hash and prev_hash are still those of
// the stored event, so the record locates it in the chain, but its content no longer
// hashes to them. Verify the chain on the store with `chaperone audit verify`.
// Tombstones are skipped and counted. The output depends only on the events and f: the
// same log gives the same bytes.
func WriteJSONL(ctx context.Context, src audit.Source, w io.Writer, f Filter) (Stats, error) {
	return export(ctx, src, w, f, "jsonl", jsonlLine)
}

// jsonlLine renders e as its canonical record, marked when it was redacted.
func jsonlLine(buf []byte, e *audit.Event, redacted bool) ([]byte, error) {
	rec, err := e.MarshalRecord()
	if err != nil {
		return buf, err
	}
	if !redacted {
		return append(buf, rec...), nil
	}
	// The canonical record is a JSON object: close it after the mark.
	buf = append(buf, rec[:len(rec)-1]...)
	return append(buf, `,"export_redacted":true}`...), nil
}
