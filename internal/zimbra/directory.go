package zimbra

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Access is how to reach the farm's directory and bind to it.
type Access struct {
	URLs     []string // tried in order
	BindDN   string
	Password string
	StartTLS bool   // on an ldap:// URL, start TLS before binding
	CAFile   string // the authority that signs the directory's certificate; "" for the system's
}

// Server is one server of the farm as the directory lists it. Attributes a server may
// set for itself (zimbra-attrs.xml: serverInherited) hold its own values where it sets
// them, the global configuration's where it does not.
type Server struct {
	Name     string   // cn: the server's host name
	Services []string // zimbraServiceEnabled: mta, mailbox, proxy, ldap, ...
	// TrustedIPs are zimbraMailTrustedIP: the proxies (and load balancers) whose
	// forwarded-for headers mailboxd believes.
	TrustedIPs []string
	// SafeIPs are zimbraHttpThrottleSafeIPs: the addresses Jetty's DoSFilter never
	// throttles.
	SafeIPs []string
	// ClientRestrictions and DataRestrictions are zimbraMtaSmtpdClientRestrictions and
	// zimbraMtaSmtpdDataRestrictions, which zmconfigd writes verbatim into main.cf's
	// smtpd_client_restrictions and smtpd_data_restrictions.
	ClientRestrictions, DataRestrictions string
}

// Runs reports whether the server runs service.
func (s Server) Runs(service string) bool { return slices.Contains(s.Services, service) }

// Lockout is the default class of service's account lockout: after MaxFailures
// consecutive failed logins within FailureLifetime, the account is locked.
type Lockout struct {
	Enabled         bool
	MaxFailures     int
	FailureLifetime string // as Zimbra writes durations: 1h, 30m
}

// Directory is what the farm's directory says of the farm.
type Directory struct {
	Servers []Server // sorted by name
	Lockout Lockout
}

// Server returns the server named name, if the directory lists it.
func (d *Directory) Server(name string) (Server, bool) {
	for _, s := range d.Servers {
		if strings.EqualFold(s.Name, name) {
			return s, true
		}
	}
	return Server{}, false
}

// The directory's entries that Read asks for.
const (
	serversBase = "cn=servers,cn=zimbra"
	globalDN    = "cn=config,cn=zimbra"
	defaultCOS  = "cn=default,cn=cos,cn=zimbra"
)

// maxServers bounds the servers read: a farm has tens.
const maxServers = 10_000

// Timeout bounds each step of a read: connecting, binding, each search.
var Timeout = 10 * time.Second

var serverAttrs = []string{"cn", "zimbraServiceEnabled", "zimbraMailTrustedIP", "zimbraHttpThrottleSafeIPs",
	"zimbraMtaSmtpdClientRestrictions", "zimbraMtaSmtpdDataRestrictions"}

// Read asks the directory, at the first of a's URLs that answers, for the farm's
// servers and the default class of service's lockout.
func Read(a Access) (*Directory, error) {
	var errs []error
	for _, u := range a.URLs {
		d, err := readFrom(a, u)
		if err == nil {
			return d, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
	}
	if len(errs) == 0 {
		return nil, errors.New("no LDAP URL")
	}
	return nil, errors.Join(errs...)
}

func readFrom(a Access, rawURL string) (*Directory, error) {
	conn, err := dial(a, rawURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetTimeout(Timeout)
	if err := conn.Bind(a.BindDN, a.Password); err != nil {
		return nil, fmt.Errorf("binding as %s: %w", a.BindDN, err)
	}
	global, err := one(conn, globalDN, serverAttrs)
	if err != nil {
		return nil, fmt.Errorf("the global configuration (%s): %w", globalDN, err)
	}
	res, err := conn.Search(ldap.NewSearchRequest(serversBase, ldap.ScopeSingleLevel, ldap.NeverDerefAliases,
		maxServers, int(Timeout/time.Second), false, "(objectClass=zimbraServer)", serverAttrs, nil))
	if err != nil {
		return nil, fmt.Errorf("the servers (%s): %w", serversBase, err)
	}
	d := &Directory{}
	for _, e := range res.Entries {
		s := Server{Name: e.GetAttributeValue("cn"), Services: e.GetAttributeValues("zimbraServiceEnabled")}
		s.TrustedIPs = inherited(e, global, "zimbraMailTrustedIP")
		s.SafeIPs = inherited(e, global, "zimbraHttpThrottleSafeIPs")
		s.ClientRestrictions = strings.Join(inherited(e, global, "zimbraMtaSmtpdClientRestrictions"), " ")
		s.DataRestrictions = strings.Join(inherited(e, global, "zimbraMtaSmtpdDataRestrictions"), " ")
		if s.Name != "" {
			d.Servers = append(d.Servers, s)
		}
	}
	slices.SortFunc(d.Servers, func(x, y Server) int { return strings.Compare(x.Name, y.Name) })
	cos, err := one(conn, defaultCOS, []string{"zimbraPasswordLockoutEnabled", "zimbraPasswordLockoutMaxFailures", "zimbraPasswordLockoutFailureLifetime"})
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
		// No default class of service: Zimbra's defaults, lockout off.
	case err != nil:
		return nil, fmt.Errorf("the default class of service (%s): %w", defaultCOS, err)
	default:
		d.Lockout.Enabled = strings.EqualFold(cos.GetAttributeValue("zimbraPasswordLockoutEnabled"), "TRUE")
		d.Lockout.MaxFailures, _ = strconv.Atoi(cos.GetAttributeValue("zimbraPasswordLockoutMaxFailures"))
		d.Lockout.FailureLifetime = cos.GetAttributeValue("zimbraPasswordLockoutFailureLifetime")
	}
	if d.Lockout.MaxFailures == 0 {
		d.Lockout.MaxFailures = 10 // zimbra-attrs.xml's defaultCOSValue
	}
	return d, nil
}

// inherited returns a server's values of attr, or the global configuration's if it
// sets none.
func inherited(server, global *ldap.Entry, attr string) []string {
	if v := server.GetAttributeValues(attr); len(v) > 0 {
		return v
	}
	return global.GetAttributeValues(attr)
}

// one reads the entry dn.
func one(conn *ldap.Conn, dn string, attrs []string) (*ldap.Entry, error) {
	res, err := conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, int(Timeout/time.Second), false, "(objectClass=*)", attrs, nil))
	if err != nil {
		return nil, err
	}
	if len(res.Entries) != 1 {
		return nil, fmt.Errorf("%d entries", len(res.Entries))
	}
	return res.Entries[0], nil
}

// dial connects to rawURL, with TLS for ldaps:// and, where a asks, StartTLS for
// ldap://. The server's certificate is checked against a.CAFile, or the system's
// authorities.
func dial(a Access, rawURL string) (*ldap.Conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	if a.CAFile != "" {
		pem, err := os.ReadFile(a.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no certificate", a.CAFile)
		}
	}
	conn, err := ldap.DialURL(rawURL, ldap.DialWithTLSConfig(tc), ldap.DialWithDialer(&net.Dialer{Timeout: Timeout}))
	if err != nil {
		return nil, err
	}
	if a.StartTLS && u.Scheme == "ldap" {
		if err := conn.StartTLS(tc); err != nil {
			conn.Close()
			return nil, fmt.Errorf("starting TLS: %w", err)
		}
	}
	return conn, nil
}
