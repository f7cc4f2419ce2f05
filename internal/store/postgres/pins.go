package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/chaperone-dev/chaperone/internal/registry"
)

// Pin returns the pin for tool, and false if there is none.
func (db *DB) Pin(ctx context.Context, tool string) (registry.Pin, bool, error) {
	pins, err := db.pgQueryPins(ctx, `WHERE tool = $1`, tool)
	if err != nil {
		return registry.Pin{}, false, fmt.Errorf("postgres: read pin %q: %w", tool, err)
	}
	if len(pins) == 0 {
		return registry.Pin{}, false, nil
	}
	return pins[0], true, nil
}

// Pins returns every pin, ordered by tool name.
func (db *DB) Pins(ctx context.Context) ([]registry.Pin, error) {
	pins, err := db.pgQueryPins(ctx, `ORDER BY tool`)
	if err != nil {
		return nil, fmt.Errorf("postgres: read pins: %w", err)
	}
	return pins, nil
}

// SetPin inserts p, or replaces the pin for p.Tool. Tool and Hash are required.
// ApprovedAt is kept to the microsecond.
func (db *DB) SetPin(ctx context.Context, p registry.Pin) error {
	if p.Tool == "" || p.Hash == "" {
		return fmt.Errorf("postgres: set pin %q: tool and hash are required", p.Tool)
	}
	if err := db.writable(); err != nil {
		return fmt.Errorf("postgres: set pin %q: %w", p.Tool, err)
	}
	def := p.Definition
	if def == nil {
		def = []byte{} // NOT NULL
	}
	_, err := db.pool.Exec(ctx, `INSERT INTO tool_pins (tool, upstream, hash, definition, approved_by, approved_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (tool) DO UPDATE SET
	upstream = excluded.upstream, hash = excluded.hash, definition = excluded.definition,
	approved_by = excluded.approved_by, approved_at = excluded.approved_at`,
		p.Tool, p.Upstream, p.Hash, def, p.ApprovedBy, pgTime(p.ApprovedAt))
	if err != nil {
		return fmt.Errorf("postgres: set pin %q: %w", p.Tool, err)
	}
	return nil
}

// pgQueryPins reads the pins selected by clause.
func (db *DB) pgQueryPins(ctx context.Context, clause string, args ...any) ([]registry.Pin, error) {
	rows, err := db.pool.Query(ctx,
		`SELECT tool, upstream, hash, definition, approved_by, approved_at FROM tool_pins `+clause, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var pins []registry.Pin
	for rows.Next() {
		var p registry.Pin
		var at time.Time
		if err := rows.Scan(&p.Tool, &p.Upstream, &p.Hash, &p.Definition, &p.ApprovedBy, &at); err != nil {
			return nil, err
		}
		p.ApprovedAt = pgReadTime(&at)
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
