package packaging

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// MaxUnitBytes bounds the unit file [ParseUnit] reads.
const MaxUnitBytes = 256 << 10

// maxUnitEntries bounds the settings of one unit file.
const maxUnitEntries = 4096

// Unit is a parsed systemd unit file.
type Unit struct {
	// Sections are the unit's sections in order.
	Sections []Section
}

// Section is one [Name] section of a unit file.
type Section struct {
	// Name is the name between the brackets, such as "Service".
	Name string
	// Line is the line of the section header.
	Line int
	// Entries are the section's settings in order; a key may appear more than once.
	Entries []Entry
}

// Entry is one Key=Value setting.
type Entry struct {
	// Line is the line the setting starts on.
	Line int
	// Key and Value are the setting, both trimmed.
	Key, Value string
}

var (
	sectionRE = regexp.MustCompile(`^\[([A-Za-z0-9 _.-]+)\]$`)
	unitKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)
)

// ParseUnit parses a systemd unit file: "#" and ";" start comment lines, "[Name]" starts a
// section, every other line is Key=Value, and a line ending in a backslash continues on
// the next with the backslash read as a space. Settings outside a section, lines without
// "=", malformed section headers and keys, and repeated section headers are errors.
func ParseUnit(data []byte) (*Unit, error) {
	if len(data) > MaxUnitBytes {
		return nil, &ParseError{Msg: fmt.Sprintf("larger than %d bytes", MaxUnitBytes)}
	}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	u := &Unit{}
	entries := 0
	for i := 0; i < len(lines); i++ {
		start := i + 1
		line := strings.TrimSpace(lines[i])
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			m := sectionRE.FindStringSubmatch(line)
			if m == nil {
				return nil, errAt(start, "malformed section header %q", truncate(line))
			}
			if u.Section(m[1]) != nil {
				return nil, errAt(start, "section [%s] repeated", m[1])
			}
			u.Sections = append(u.Sections, Section{Name: m[1], Line: start})
			continue
		}
		var text strings.Builder
		for {
			more := strings.HasSuffix(line, `\`)
			if !more {
				text.WriteString(line)
				break
			}
			text.WriteString(line[:len(line)-1])
			text.WriteByte(' ')
			next := ""
			for i+1 < len(lines) {
				i++
				t := strings.TrimSpace(lines[i])
				if t != "" && (t[0] == '#' || t[0] == ';') {
					continue
				}
				next = t
				break
			}
			if next == "" {
				break
			}
			line = next
		}
		if len(u.Sections) == 0 {
			return nil, errAt(start, "setting before the first section")
		}
		key, value, ok := strings.Cut(text.String(), "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok {
			return nil, errAt(start, "%q is not Key=Value", truncate(key))
		}
		if !unitKeyRE.MatchString(key) {
			return nil, errAt(start, "malformed key %q", truncate(key))
		}
		entries++
		if entries > maxUnitEntries {
			return nil, errAt(start, "more than %d settings", maxUnitEntries)
		}
		s := &u.Sections[len(u.Sections)-1]
		s.Entries = append(s.Entries, Entry{Line: start, Key: key, Value: value})
	}
	return u, nil
}

// Section returns the section called name, or nil.
func (u *Unit) Section(name string) *Section {
	for i := range u.Sections {
		if u.Sections[i].Name == name {
			return &u.Sections[i]
		}
	}
	return nil
}

// Value returns the last value of key in section and whether the key is set there.
func (u *Unit) Value(section, key string) (string, bool) {
	s := u.Section(section)
	if s == nil {
		return "", false
	}
	for i := len(s.Entries) - 1; i >= 0; i-- {
		if s.Entries[i].Key == key {
			return s.Entries[i].Value, true
		}
	}
	return "", false
}

// List returns the items of a list setting as systemd combines them: each assignment adds
// its space-separated items, and an empty assignment clears the list. set reports whether
// the key appears at all.
func (u *Unit) List(section, key string) (items []string, set bool) {
	s := u.Section(section)
	if s == nil {
		return nil, false
	}
	for _, e := range s.Entries {
		if e.Key != key {
			continue
		}
		set = true
		if e.Value == "" {
			items = nil
			continue
		}
		items = append(items, strings.Fields(e.Value)...)
	}
	return items, set
}

// line returns the line of the last assignment of key in section, or of the section.
func (u *Unit) line(section, key string) int {
	s := u.Section(section)
	if s == nil {
		return 0
	}
	for i := len(s.Entries) - 1; i >= 0; i-- {
		if s.Entries[i].Key == key {
			return s.Entries[i].Line
		}
	}
	return s.Line
}

// unitBool reads a systemd boolean.
func unitBool(v string) (value, ok bool) {
	switch strings.ToLower(v) {
	case "1", "yes", "y", "true", "t", "on":
		return true, true
	case "0", "no", "n", "false", "f", "off":
		return false, true
	}
	return false, false
}

// hardeningBools are the [Service] booleans Chaperone's unit must turn on.
var hardeningBools = []string{
	"NoNewPrivileges", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
	"ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "RestrictNamespaces",
	"LockPersonality", "MemoryDenyWriteExecute", "RestrictSUIDSGID", "RestrictRealtime",
}

// hardeningValues are the [Service] settings that must have exactly these values.
var hardeningValues = [][2]string{
	{"ProtectSystem", "strict"},
	{"ProtectHome", "yes"},
	{"SystemCallArchitectures", "native"},
	{"UMask", "0077"},
	{"Restart", "on-failure"},
	{"StateDirectory", "chaperone"},
	{"ConfigurationDirectory", "chaperone"},
	{"ExecReload", "/bin/kill -HUP $MAINPID"},
}

// execPrefixes are the characters systemd reads before an Exec command's path.
const execPrefixes = "@-:+!|"

// allowedFamilies are the socket address families the gateway needs.
var allowedFamilies = []string{"AF_UNIX", "AF_INET", "AF_INET6"}

// CheckUnit applies Chaperone's rules for its systemd unit to u and returns every breach:
// the sandboxing settings named in [hardeningBools] and [hardeningValues], a
// non-root user (DynamicUser=yes or a User other than root), no capabilities (an empty
// CapabilityBoundingSet, no AmbientCapabilities), only AF_UNIX, AF_INET and AF_INET6
// sockets, a system call allow list including @system-service, a numeric LimitNOFILE of
// at least 1024, an absolute ExecStart without the "+" or "!" prefixes that bypass the
// sandbox, and an [Install] WantedBy.
func CheckUnit(u *Unit) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, errAt(u.line("Service", key), format, args...))
	}
	if u.Section("Service") == nil {
		return []error{&ParseError{Msg: "no [Service] section"}}
	}
	for _, k := range hardeningBools {
		v, set := u.Value("Service", k)
		if b, ok := unitBool(v); !set || !ok || !b {
			bad(k, "%s=%q, want yes", k, v)
		}
	}
	for _, kv := range hardeningValues {
		if v, _ := u.Value("Service", kv[0]); v != kv[1] {
			bad(kv[0], "%s=%q, want %q", kv[0], v, kv[1])
		}
	}

	dyn, _ := u.Value("Service", "DynamicUser")
	user, hasUser := u.Value("Service", "User")
	if b, _ := unitBool(dyn); !b && (!hasUser || user == "" || user == "root" || strings.TrimLeft(user, "0") == "") {
		bad("User", "the service runs as root: set DynamicUser=yes or a User other than root")
	}

	if caps, set := u.List("Service", "CapabilityBoundingSet"); !set || len(caps) > 0 {
		bad("CapabilityBoundingSet", "CapabilityBoundingSet=%q, want set and empty (no capabilities)", strings.Join(caps, " "))
	}
	if caps, _ := u.List("Service", "AmbientCapabilities"); len(caps) > 0 {
		bad("AmbientCapabilities", "AmbientCapabilities=%q, want none", strings.Join(caps, " "))
	}

	fams, set := u.List("Service", "RestrictAddressFamilies")
	if !set || len(fams) == 0 {
		bad("RestrictAddressFamilies", "RestrictAddressFamilies is not set")
	}
	for _, f := range fams {
		if !slices.Contains(allowedFamilies, f) {
			bad("RestrictAddressFamilies", "RestrictAddressFamilies allows %q; want only %s", truncate(f), strings.Join(allowedFamilies, " "))
		}
	}

	// Allow-list entries of SystemCallFilter do not start with "~"; deny lists do.
	allowed := false
	if s := u.Section("Service"); s != nil {
		for _, e := range s.Entries {
			if e.Key == "SystemCallFilter" && !strings.HasPrefix(e.Value, "~") &&
				slices.Contains(strings.Fields(e.Value), "@system-service") {
				allowed = true
			}
		}
	}
	if !allowed {
		bad("SystemCallFilter", "SystemCallFilter does not allow-list @system-service")
	}

	if v, _ := u.Value("Service", "LimitNOFILE"); v == "" {
		bad("LimitNOFILE", "LimitNOFILE is not set")
	} else if n, err := strconv.ParseUint(v, 10, 64); err != nil || n < 1024 {
		bad("LimitNOFILE", "LimitNOFILE=%q, want a number of at least 1024", v)
	}

	for _, k := range []string{"ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload", "ExecStop", "ExecStopPost"} {
		s := u.Section("Service")
		for _, e := range s.Entries {
			if e.Key != k || e.Value == "" {
				continue
			}
			prefix := e.Value[:len(e.Value)-len(strings.TrimLeft(e.Value, execPrefixes))]
			if strings.ContainsAny(prefix, "+!") {
				errs = append(errs, errAt(e.Line, "%s=%q runs outside the sandbox (prefix %q)", k, truncate(e.Value), prefix))
			}
		}
	}
	start, ok := u.Value("Service", "ExecStart")
	if !ok || !strings.HasPrefix(strings.TrimLeft(start, execPrefixes), "/") {
		bad("ExecStart", "ExecStart=%q, want an absolute path", truncate(start))
	}

	if want, _ := u.Value("Install", "WantedBy"); want == "" {
		errs = append(errs, &ParseError{Line: u.line("Install", "WantedBy"), Msg: "no [Install] WantedBy: the unit cannot be enabled"})
	}
	return errs
}
