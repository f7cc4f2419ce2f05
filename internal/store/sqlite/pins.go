package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/chaperone-dev/chaperone/internal/registry"
)

// Pin is a tool definition as approved: the registry's trust-on-first-approval record for
// one exposed tool name. The store implements [registry.PinStore] directly.
type Pin = registry.Pin

var _ registry.PinStore = (*DB)(nil)

// Pin returns the pin for tool, and false if there is none.
func (db *DB) Pin(ctx context.Context, tool string) (Pin, bool, error) {
	pins, err := db.queryPins(ctx, `WHERE tool = ?`, tool)
	if err != nil {
		return Pin{}, false, fmt.Errorf("sqlite: read pin %q: %w", tool, err)
	}
	if len(pins) == 0 {
		return Pin{}, false, nil
	}
	return pins[0], true, nil
}

// Pins returns every pin, ordered by tool name.
func (db *DB) Pins(ctx context.Context) ([]Pin, error) {
	pins, err := db.queryPins(ctx, `ORDER BY tool`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read pins: %w", err)
	}
	return pins, nil
}

// SetPin inserts p, or replaces the pin for p.Tool. Tool and Hash are
// required.
func (db *DB) SetPin(ctx context.Context, p Pin) error {
	if p.Tool == "" || p.Hash == "" {
		return fmt.Errorf("sqlite: set pin %q: tool and hash are required", p.Tool)
	}
	w, err := db.writer()
	if err != nil {
		return fmt.Errorf("sqlite: set pin %q: %w", p.Tool, err)
	}
	def := p.Definition
	if def == nil {
		def = []byte{} // NOT NULL
	}
	_, err = w.ExecContext(ctx, `INSERT INTO tool_pins (tool, upstream, hash, definition, approved_by, approved_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (tool) DO UPDATE SET
	upstream = excluded.upstream, hash = excluded.hash, definition = excluded.definition,
	approved_by = excluded.approved_by, approved_at = excluded.approved_at`,
		p.Tool, p.Upstream, p.Hash, def, p.ApprovedBy, p.ApprovedAt.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("sqlite: set pin %q: %w", p.Tool, err)
	}
	return nil
}

// queryPins reads the pins selected by clause.
func (db *DB) queryPins(ctx context.Context, clause string, args ...any) ([]Pin, error) {
	rows, err := db.r.QueryContext(ctx,
		`SELECT tool, upstream, hash, definition, approved_by, approved_at FROM tool_pins `+clause, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var pins []Pin
	for rows.Next() {
		var p Pin
		var at string
		if err := rows.Scan(&p.Tool, &p.Upstream, &p.Hash, &p.Definition, &p.ApprovedBy, &at); err != nil {
			return nil, err
		}
		if p.ApprovedAt, err = time.Parse(time.RFC3339Nano, at); err != nil {
			return nil, fmt.Errorf("pin %q: approved_at: %w", p.Tool, err)
		}
		if len(p.Definition) == 0 {
			p.Definition = nil
		}
		pins = append(pins, p)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return pins, nil
}
