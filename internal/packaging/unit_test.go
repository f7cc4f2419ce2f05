package packaging

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// goodUnit passes [CheckUnit]; the check tests break it one way at a time.
const goodUnit = `[Unit]
Description=Test

[Service]
ExecStart=/usr/bin/app serve
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
LimitNOFILE=65536
DynamicUser=yes
StateDirectory=chaperone
ConfigurationDirectory=chaperone
UMask=0077
NoNewPrivileges=yes
CapabilityBoundingSet=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=true
PrivateDevices=on
ProtectKernelTunables=1
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged

[Install]
WantedBy=multi-user.target
`

func TestParseUnit(t *testing.T) {
	t.Parallel()
	in := "# comment\n; also a comment\n[Unit]\nDescription = a \\\n  long\\\n# skipped\n  description\n\n[Service]\r\nExecStart=/bin/x\nCapabilityBoundingSet=CAP_A CAP_B\nCapabilityBoundingSet=CAP_C\nCapabilityBoundingSet=\nCapabilityBoundingSet=CAP_D\nEmpty=\n"
	got, err := ParseUnit([]byte(in))
	if err != nil {
		t.Fatalf("ParseUnit = %v", err)
	}
	want := &Unit{Sections: []Section{
		{Name: "Unit", Line: 3, Entries: []Entry{{Line: 4, Key: "Description", Value: "a  long description"}}},
		{Name: "Service", Line: 9, Entries: []Entry{
			{Line: 10, Key: "ExecStart", Value: "/bin/x"},
			{Line: 11, Key: "CapabilityBoundingSet", Value: "CAP_A CAP_B"},
			{Line: 12, Key: "CapabilityBoundingSet", Value: "CAP_C"},
			{Line: 13, Key: "CapabilityBoundingSet", Value: ""},
			{Line: 14, Key: "CapabilityBoundingSet", Value: "CAP_D"},
			{Line: 15, Key: "Empty", Value: ""},
		}},
	}}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("ParseUnit mismatch (-want +got):\n%s", diff)
	}
	if v, ok := got.Value("Service", "ExecStart"); !ok || v != "/bin/x" {
		t.Errorf("Value(Service, ExecStart) = %q, %v", v, ok)
	}
	if v, ok := got.Value("Service", "Missing"); ok || v != "" {
		t.Errorf("Value(Service, Missing) = %q, %v, want unset", v, ok)
	}
	if v, ok := got.Value("Nope", "ExecStart"); ok || v != "" {
		t.Errorf("Value(Nope, ExecStart) = %q, %v, want unset", v, ok)
	}
	if items, set := got.List("Service", "CapabilityBoundingSet"); !set || !cmp.Equal(items, []string{"CAP_D"}) {
		t.Errorf("List(CapabilityBoundingSet) = %q, %v, want [CAP_D] (an empty assignment resets)", items, set)
	}
	if items, set := got.List("Service", "Empty"); !set || len(items) != 0 {
		t.Errorf("List(Empty) = %q, %v, want set and empty", items, set)
	}
	if items, set := got.List("Service", "Missing"); set || items != nil {
		t.Errorf("List(Missing) = %q, %v, want unset", items, set)
	}
}

func TestParseUnitErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		line int
		want string
	}{
		{"setting before a section", "A=b\n[Unit]", 1, "setting before the first section"},
		{"no equals", "[Unit]\nDescription\n", 2, `"Description" is not Key=Value`},
		{"empty key", "[Unit]\n=x\n", 2, `malformed key ""`},
		{"key with blank", "[Unit]\nA B=c\n", 2, `malformed key "A B"`},
		{"unclosed header", "[Unit\n", 1, "malformed section header"},
		{"empty header", "[]\n", 1, "malformed section header"},
		{"header with bracket", "[A]]\n", 1, "malformed section header"},
		{"repeated section", "[Unit]\n[Service]\n[Unit]\n", 3, "section [Unit] repeated"},
		{"oversized", "[Unit]\n" + strings.Repeat("#", MaxUnitBytes), 0, "larger than"},
		{"too many settings", "[Unit]\n" + strings.Repeat("A=b\n", maxUnitEntries+1), maxUnitEntries + 2, "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseUnit([]byte(tt.in))
			wantParseError(t, "ParseUnit", tt.in, err, tt.line, tt.want)
		})
	}
}

func TestCheckUnit(t *testing.T) {
	t.Parallel()
	u, err := ParseUnit([]byte(goodUnit))
	if err != nil {
		t.Fatal(err)
	}
	if errs := CheckUnit(u); len(errs) != 0 {
		t.Fatalf("CheckUnit(good) = %v, want none", errs)
	}

	tests := []struct {
		name     string
		old, new string   // replace old with new in goodUnit
		want     []string // each error expected, in order, by a part of its text
	}{
		{"no new privileges off", "NoNewPrivileges=yes", "NoNewPrivileges=no", []string{`line 13: NoNewPrivileges="no", want yes`}},
		{"boolean missing", "PrivateTmp=true\n", "", []string{`line 4: PrivateTmp="", want yes`}},
		{"boolean garbage", "LockPersonality=yes", "LockPersonality=maybe", []string{`LockPersonality="maybe", want yes`}},
		{"protect system full", "ProtectSystem=strict", "ProtectSystem=full", []string{`ProtectSystem="full", want "strict"`}},
		{"home readable", "ProtectHome=yes", "ProtectHome=read-only", []string{`ProtectHome="read-only", want "yes"`}},
		{"loose umask", "UMask=0077", "UMask=0022", []string{`UMask="0022", want "0077"`}},
		{"restart always", "Restart=on-failure", "Restart=always", []string{`Restart="always", want "on-failure"`}},
		{"wrong reload", "ExecReload=/bin/kill -HUP $MAINPID", "ExecReload=/bin/kill -TERM $MAINPID", []string{`ExecReload="/bin/kill -TERM $MAINPID"`}},
		{"no state directory", "StateDirectory=chaperone\n", "", []string{`StateDirectory="", want "chaperone"`}},
		{"root user", "DynamicUser=yes", "User=root", []string{"the service runs as root"}},
		{"uid 0", "DynamicUser=yes", "User=0", []string{"the service runs as root"}},
		{"no user", "DynamicUser=yes", "DynamicUser=no", []string{"the service runs as root"}},
		{"named user", "DynamicUser=yes", "User=chaperone", nil},
		{"capabilities kept", "CapabilityBoundingSet=", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", []string{`CapabilityBoundingSet="CAP_NET_BIND_SERVICE", want set and empty`}},
		{"capabilities unset", "CapabilityBoundingSet=\n", "", []string{`CapabilityBoundingSet="", want set and empty`}},
		{"capabilities reset then empty", "CapabilityBoundingSet=", "CapabilityBoundingSet=CAP_KILL\nCapabilityBoundingSet=", nil},
		{"ambient capabilities", "CapabilityBoundingSet=", "CapabilityBoundingSet=\nAmbientCapabilities=CAP_NET_RAW", []string{`AmbientCapabilities="CAP_NET_RAW", want none`}},
		{"netlink allowed", "AF_INET AF_INET6", "AF_INET AF_INET6 AF_NETLINK", []string{`RestrictAddressFamilies allows "AF_NETLINK"`}},
		{"families as deny list", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "RestrictAddressFamilies=~AF_PACKET", []string{`RestrictAddressFamilies allows "~AF_PACKET"`}},
		{"families unset", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n", "", []string{"RestrictAddressFamilies is not set"}},
		{"syscall deny list only", "SystemCallFilter=@system-service\n", "", []string{"SystemCallFilter does not allow-list @system-service"}},
		{"syscall service denied", "SystemCallFilter=@system-service", "SystemCallFilter=~@system-service", []string{"does not allow-list @system-service"}},
		{"nofile unset", "LimitNOFILE=65536\n", "", []string{"LimitNOFILE is not set"}},
		{"nofile small", "LimitNOFILE=65536", "LimitNOFILE=256", []string{`LimitNOFILE="256", want a number of at least 1024`}},
		{"nofile range", "LimitNOFILE=65536", "LimitNOFILE=1024:4096", []string{`LimitNOFILE="1024:4096"`}},
		{"privileged start", "ExecStart=/usr/bin/app", "ExecStart=+/usr/bin/app", []string{`line 5: ExecStart="+/usr/bin/app serve" runs outside the sandbox (prefix "+")`}},
		{"privileged pre", "ExecStart=/usr/bin/app serve", "ExecStartPre=-!/bin/true\nExecStart=/usr/bin/app serve", []string{`ExecStartPre="-!/bin/true" runs outside the sandbox (prefix "-!")`}},
		{"relative start", "ExecStart=/usr/bin/app", "ExecStart=app", []string{`ExecStart="app serve", want an absolute path`}},
		{"ignore failure prefix is fine", "ExecStart=/usr/bin/app", "ExecStart=-/usr/bin/app", nil},
		{"no install", "[Install]\nWantedBy=multi-user.target\n", "", []string{"no [Install] WantedBy"}},
		{"several at once", "UMask=0077\nNoNewPrivileges=yes", "UMask=0002\nNoNewPrivileges=false", []string{`NoNewPrivileges="false"`, `UMask="0002"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if !strings.Contains(goodUnit, tt.old) {
				t.Fatalf("%q is not in the good unit", tt.old)
			}
			src := strings.Replace(goodUnit, tt.old, tt.new, 1)
			u, err := ParseUnit([]byte(src))
			if err != nil {
				t.Fatalf("ParseUnit: %v\n%s", err, src)
			}
			errs := CheckUnit(u)
			if len(errs) != len(tt.want) {
				t.Fatalf("CheckUnit = %v, want %d errors: %q", errs, len(tt.want), tt.want)
			}
			for i, e := range errs {
				if !strings.Contains(e.Error(), tt.want[i]) {
					t.Errorf("CheckUnit error %d = %q, want %q", i, e, tt.want[i])
				}
			}
		})
	}

	if errs := CheckUnit(&Unit{Sections: []Section{{Name: "Unit"}}}); len(errs) != 1 || !strings.Contains(errs[0].Error(), "no [Service] section") {
		t.Errorf("CheckUnit(no Service) = %v, want one error naming [Service]", errs)
	}
}

func FuzzParseUnit(f *testing.F) {
	f.Add([]byte(goodUnit))
	f.Add([]byte("[Unit]\nA=b \\\n; c\n d\\\n\n[Service]\r\nExecStart=+!/x\nCapabilityBoundingSet=\n"))
	f.Add([]byte("[A]\n=\n"))
	f.Add([]byte("[Service]\nExecStart=\nLimitNOFILE=-1\nUser=00\nSystemCallFilter=~\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := ParseUnit(data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("ParseUnit error %v is not a *ParseError", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, s := range u.Sections {
			if seen[s.Name] {
				t.Fatalf("section %q twice", s.Name)
			}
			seen[s.Name] = true
			for _, e := range s.Entries {
				if e.Key == "" || e.Line < s.Line || strings.TrimSpace(e.Value) != e.Value {
					t.Fatalf("section %q: entry %+v", s.Name, e)
				}
			}
		}
		CheckUnit(u)
	})
}
