package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"

	"github.com/chaperone-dev/chaperone/internal/inspect"
)

// Bounds of resolution and dialing.
const (
	// MaxAddrs is the most addresses of a name the proxy keeps and dials, in the order
	// the resolver gave them; every address the resolver returns is vetted all the same.
	MaxAddrs = 16
)

// errNotVetted is returned when a connection would go to an address that was not vetted
// for the request, which only a bug could cause; the connection is refused.
var errNotVetted = errors.New("address not vetted for this request")

// vetting is the outcome of resolving and vetting a host.
type vetting struct {
	addrs []netip.Addr
	// When refused, status, code and message are for the agent and reason for the audit
	// log.
	status        int
	code, message string
	reason        string
}

// vet reports whether an address may be reached: a public address, or a private,
// loopback, link-local or metadata address covered by AllowPrivate. It returns the kind
// of a refused address ([inspect.PrivateAddr]).
func (p *Proxy) vet(a netip.Addr) (string, bool) {
	a = a.Unmap().WithZone("")
	kind, private := inspect.PrivateAddr(a)
	if !private {
		return "", true
	}
	for _, ap := range p.allowPrivate {
		if ap.Contains(a) {
			return "", true
		}
	}
	return kind, false
}

// resolve returns the vetted addresses of the target's host: the literal address, or
// every address the host name resolves to. If ANY address is refused the host is
// refused, so a name that resolves to one public and one private address cannot be used
// to reach the private one. A lookup that fails, times out or finds no address refuses
// the host (fail closed). The name is looked up once per request; the proxy then dials
// only these addresses and never resolves again, so rebinding the name afterwards
// reaches nothing.
func (p *Proxy) resolve(ctx context.Context, t *target) vetting {
	var addrs []netip.Addr
	if t.addr.IsValid() {
		addrs = []netip.Addr{t.addr}
	} else {
		lctx, cancel := context.WithTimeout(ctx, p.dialTimeout)
		got, err := p.resolver.LookupNetIP(lctx, "ip", t.host)
		cancel()
		if err != nil {
			return vetting{
				status: 502, code: CodeResolveFailed,
				message: fmt.Sprintf("The host name %s could not be resolved.", t.host),
				reason:  fmt.Sprintf("resolve %s: %s", t.host, clip(err.Error(), 200)),
			}
		}
		addrs = got
	}
	var out []netip.Addr
	for _, a := range addrs {
		if !a.IsValid() {
			return vetting{
				status: 502, code: CodeResolveFailed,
				message: fmt.Sprintf("The host name %s could not be resolved.", t.host),
				reason:  fmt.Sprintf("resolve %s: the resolver returned an invalid address", t.host),
			}
		}
		a = a.Unmap().WithZone("")
		if kind, ok := p.vet(a); !ok {
			v := vetting{status: 403, code: CodeEgressDenied}
			if t.addr.IsValid() {
				v.message = fmt.Sprintf("%s is a %s address, which agents may not reach.", t.host, phrase(kind))
				v.reason = fmt.Sprintf("%s address %s", phrase(kind), a)
			} else {
				v.message = fmt.Sprintf("%s resolves to a %s address, which agents may not reach.", t.host, phrase(kind))
				v.reason = fmt.Sprintf("%s resolves to %s address %s", t.host, phrase(kind), a)
			}
			return v
		}
		if len(out) < MaxAddrs && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return vetting{
			status: 502, code: CodeResolveFailed,
			message: fmt.Sprintf("The host name %s could not be resolved.", t.host),
			reason:  fmt.Sprintf("resolve %s: no address", t.host),
		}
	}
	return vetting{addrs: out}
}

// dialKey is the context key under which a plain-HTTP exchange hands its vetted
// destination to the transport's DialContext.
type dialKey struct{}

// dialTarget is what the transport may connect to for one request.
type dialTarget struct {
	hostPort string // net.JoinHostPort(host, port), as the transport asks to dial it
	addrs    []netip.Addr
	port     int
}

// transportDial is the DialContext of the proxy's transport. It connects only to the
// addresses vetted for the request whose context carries them, and refuses anything
// else: the transport never resolves a name itself.
func (p *Proxy) transportDial(ctx context.Context, network, address string) (net.Conn, error) {
	dt, ok := ctx.Value(dialKey{}).(*dialTarget)
	if !ok || dt == nil {
		return nil, fmt.Errorf("dial %s: %w", clip(address, 300), errNotVetted)
	}
	if address != dt.hostPort {
		return nil, fmt.Errorf("dial %s: %w", clip(address, 300), errNotVetted)
	}
	return p.dialVetted(ctx, network, dt.addrs, dt.port)
}

// dialVetted connects to the first of addrs that answers, within the dial timeout.
func (p *Proxy) dialVetted(ctx context.Context, network string, addrs []netip.Addr, port int) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("dial %s: not a TCP network", clip(network, 16))
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("dial: %w", errNotVetted)
	}
	ctx, cancel := context.WithTimeout(ctx, p.dialTimeout)
	defer cancel()
	var errs []error
	for _, a := range addrs {
		c, err := p.dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(a, uint16(port)).String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// control re-vets, in the dialer, the address actually connected to. The dialer is only
// ever given vetted addresses, so this refuses nothing unless a bug hands it another one.
func (p *Proxy) control(_ context.Context, network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dial %s %s: not an address and port: %w", network, clip(address, 300), errNotVetted)
	}
	if kind, ok := p.vet(ap.Addr()); !ok {
		return fmt.Errorf("dial %s %s: %s address: %w", network, address, phrase(kind), errNotVetted)
	}
	return nil
}
