package postgres

import (
	"github.com/chaperone-dev/chaperone/internal/approval"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/store"
)

var (
	_ store.Store           = (*DB)(nil)
	_ audit.Store           = (*DB)(nil)
	_ audit.SealingStore    = (*DB)(nil)
	_ audit.Source          = (*DB)(nil)
	_ audit.CheckpointStore = (*DB)(nil)
	_ registry.PinStore     = (*DB)(nil)
	_ identity.AgentStore   = (*DB)(nil)
	_ identity.TaskStore    = (*DB)(nil)
	_ approval.Store        = (*DB)(nil)
	_ contain.KillStore     = (*DB)(nil)
	_ contain.IdemStore     = (*DB)(nil)
)
