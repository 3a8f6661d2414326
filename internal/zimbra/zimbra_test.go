package zimbra

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/logban/logban/internal/config"
	"github.com/logban/logban/internal/farmkeys"
	"github.com/logban/logban/internal/slapdtest"
)

// farmLDIF is a three-server farm, as Zimbra's directory holds one: an MTA, a proxy
// and a mailbox host; the global configuration trusts a load balancer and spares a
// monitoring network; the default class of service locks an account after 6 failures.
const farmLDIF = `dn: cn=config,cn=zimbra
changetype: modify
add: zimbraMailTrustedIP
zimbraMailTrustedIP: 192.0.2.250
-
add: zimbraHttpThrottleSafeIPs
zimbraHttpThrottleSafeIPs: 198.51.100.0/28
zimbraHttpThrottleSafeIPs: not-an-address

dn: cn=mta1.farm.test,cn=servers,cn=zimbra
changetype: add
objectClass: zimbraServer
cn: mta1.farm.test
zimbraServiceEnabled: mta
zimbraServiceEnabled: stats

dn: cn=proxy1.farm.test,cn=servers,cn=zimbra
changetype: add
objectClass: zimbraServer
cn: proxy1.farm.test
zimbraServiceEnabled: proxy
zimbraServiceEnabled: memcached

dn: cn=mbox1.farm.test,cn=servers,cn=zimbra
changetype: add
objectClass: zimbraServer
cn: mbox1.farm.test
zimbraServiceEnabled: mailbox
zimbraServiceEnabled: ldap
zimbraHttpThrottleSafeIPs: 198.51.100.77

dn: cn=default,cn=cos,cn=zimbra
changetype: add
objectClass: zimbraCOS
cn: default
zimbraPasswordLockoutEnabled: TRUE
zimbraPasswordLockoutMaxFailures: 6
zimbraPasswordLockoutFailureLifetime: 2h
`

// farmHosts resolves the farm's names as its DNS would.
var farmHosts = map[string][]netip.Addr{
	"mta1.farm.test":   {netip.MustParseAddr("192.0.2.11")},
	"proxy1.farm.test": {netip.MustParseAddr("192.0.2.21"), netip.MustParseAddr("2001:db8::21")},
	"mbox1.farm.test":  {netip.MustParseAddr("192.0.2.31")},
	"mta2.farm.test":   {netip.MustParseAddr("192.0.2.12")},
}

func farmResolver(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, ok := farmHosts[host]; ok {
		return a, nil
	}
	return nil, errors.New("no such host")
}

// startFarm runs slapd with the farm, its entries added as ldapmodify would.
func startFarm(t *testing.T) *slapdtest.Server {
	s := slapdtest.Start(t, "")
	s.Modify(t, farmLDIF)
	return s
}

func readFarm(t *testing.T, root string) (Install, LocalConfig, *Directory) {
	in, err := Find(root)
	if err != nil {
		t.Fatal(err)
	}
	lc, err := ReadLocalConfig(in.LocalConfig())
	if err != nil {
		t.Fatal(err)
	}
	a, err := lc.LDAP()
	if err != nil {
		t.Fatal(err)
	}
	d, err := Read(a)
	if err != nil {
		t.Fatal(err)
	}
	return in, lc, d
}

// The directory, asked as localconfig.xml says, names the farm's servers, what each
// runs, the lists each inherits or overrides, and the lockout.
func TestReadTheFarmsDirectory(t *testing.T) {
	s := startFarm(t)
	in, lc, d := readFarm(t, s.InstallRoot(t, "zimbra", "mbox1.farm.test", "zimbra"))
	if in.Product != "Zimbra" || in.Syslog != "/var/log/zimbra.log" || lc["zimbra_server_hostname"] != "mbox1.farm.test" {
		t.Errorf("install %+v, host %q", in, lc["zimbra_server_hostname"])
	}
	var names []string
	for _, s := range d.Servers {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"mbox1.farm.test", "mta1.farm.test", "proxy1.farm.test"}) {
		t.Fatalf("servers %v", names)
	}
	mbox, _ := d.Server("mbox1.farm.test")
	mta, _ := d.Server("mta1.farm.test")
	if !mbox.Runs("mailbox") || mbox.Runs("mta") || !mta.Runs("mta") {
		t.Errorf("services: mbox %v, mta %v", mbox.Services, mta.Services)
	}
	if !slices.Equal(mbox.SafeIPs, []string{"198.51.100.77"}) || len(mta.SafeIPs) != 2 {
		t.Errorf("safe IPs: mbox %v (its own), mta %v (the global's)", mbox.SafeIPs, mta.SafeIPs)
	}
	if mta.ClientRestrictions != "reject_unauth_pipelining" || !slices.Equal(mta.TrustedIPs, []string{"192.0.2.250"}) {
		t.Errorf("mta inherits %q, %v", mta.ClientRestrictions, mta.TrustedIPs)
	}
	if d.Lockout != (Lockout{Enabled: true, MaxFailures: 6, FailureLifetime: "2h"}) {
		t.Errorf("lockout %+v", d.Lockout)
	}

	a := d.Addresses(context.Background(), "mta1.farm.test", farmResolver)
	want := []string{"192.0.2.11/32", "192.0.2.21/32", "192.0.2.31/32", "2001:db8::21/128"}
	if got := prefixStrings(a.Servers); !slices.Equal(got, want) {
		t.Errorf("servers' addresses %v, want %v", got, want)
	}
	if got := prefixStrings(a.Trusted); !slices.Equal(got, []string{"192.0.2.21/32", "192.0.2.250/32", "2001:db8::21/128"}) {
		t.Errorf("trusted %v: the proxy's addresses and zimbraMailTrustedIP", got)
	}
	if got := prefixStrings(a.Safe); !slices.Equal(got, []string{"198.51.100.0/28"}) || len(a.Ignored) != 1 {
		t.Errorf("safe %v, ignored %v", got, a.Ignored)
	}

	// A name that does not resolve is reported, not guessed.
	a = d.Addresses(context.Background(), "mta1.farm.test", func(ctx context.Context, host string) ([]netip.Addr, error) {
		if host == "proxy1.farm.test" {
			return nil, errors.New("no such host")
		}
		return farmResolver(ctx, host)
	})
	if len(a.Unresolved) != 1 || !strings.HasPrefix(a.Unresolved[0], "proxy1.farm.test: ") || slices.Contains(prefixStrings(a.Servers), "192.0.2.21/32") {
		t.Errorf("unresolved %v, servers %v", a.Unresolved, a.Servers)
	}

	// A wrong password is an error naming the bind, never the password.
	acc, _ := lc.LDAP()
	acc.Password = "wrong"
	if _, err := Read(acc); err == nil || !strings.Contains(err.Error(), slapdtest.BindDN) || strings.Contains(err.Error(), slapdtest.Password) {
		t.Errorf("wrong password: %v", err)
	}
}

// Each host of the farm gets the jails of what it runs, the other hosts' jails to
// enforce their bans, the farm, and the [zimbra] table; every configuration loads as
// ban-server -check loads it; none holds the LDAP password.
func TestSetupWritesEachHostsConfiguration(t *testing.T) {
	s := startFarm(t)
	// The farm's keys, as the printed "ban-client farm init" makes them.
	keys := filepath.Join(t.TempDir(), "farm")
	if err := farmkeys.Init(keys, "zimbra"); err != nil {
		t.Fatal(err)
	}
	for node, host := range map[string]string{"mta1": "mta1.farm.test", "proxy1": "proxy1.farm.test", "mbox1": "mbox1.farm.test"} {
		if _, err := farmkeys.AddNode(keys, node, []string{host}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		folder, user, host string
		product, prefix    string
		has, lacks         []string
	}{
		{"zimbra", "zimbra", "mta1.farm.test", "Zimbra", "zimbra",
			[]string{`[jails.zimbra-submission]`, `logpath  = ["/var/log/zimbra.log"]`, `node    = "mta1"`, "[farm.embedded]", "[policy]"},
			[]string{"enforce = false"}},
		{"zextras", "zextras", "mbox1.farm.test", "Carbonio", "carbonio",
			[]string{`[jails.carbonio-mailbox-auth]`, "/log/audit.log", `maxretry = 5`, `findtime = "2h"`, "enforce = false",
				`[jails.carbonio-submission]` + "\nfilter   = \"zimbra-submission\"\nmaxretry"},
			[]string{"[policy]"}},
		{"zimbra", "zimbra", "proxy1.farm.test", "Zimbra", "zimbra",
			[]string{`[jails.zimbra-proxy-auth]`, "/log/nginx.log", `[jails.zimbra-mobile]`, "/log/nginx.access.log"},
			[]string{"enforce = false", "[policy]"}},
	} {
		t.Run(c.host, func(t *testing.T) {
			root := s.InstallRoot(t, c.folder, c.host, c.user)
			in, lc, d := readFarm(t, root)
			if in.Product != c.product {
				t.Errorf("product %q, want %q", in.Product, c.product)
			}
			p, err := Setup(Host{Install: in, Name: lc["zimbra_server_hostname"], Directory: d,
				Addresses: d.Addresses(context.Background(), c.host, farmResolver), KeysDir: keys, Postfix: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range c.has {
				if !strings.Contains(p.Config, want) {
					t.Errorf("no %q in\n%s", want, p.Config)
				}
			}
			for _, not := range c.lacks {
				if strings.Contains(p.Config, not) {
					t.Errorf("%q in\n%s", not, p.Config)
				}
			}
			if strings.Contains(p.Config+strings.Join(p.Found, "")+strings.Join(p.Why, ""), slapdtest.Password) {
				t.Error("the LDAP password is in the configuration or the report")
			}
			if !strings.Contains(p.FarmInit, "mta1=mta1.farm.test") {
				t.Errorf("farm init %q", p.FarmInit)
			}
			path := filepath.Join(t.TempDir(), "logban.toml")
			os.WriteFile(path, []byte(p.Config), 0o600)
			cfg, err := config.Load(path)
			if err != nil {
				t.Fatalf("the configuration does not load: %v\n%s", err, p.Config)
			}
			if cfg.Zimbra == nil || cfg.Zimbra.Root != root {
				t.Errorf("[zimbra] %+v", cfg.Zimbra)
			}
		})
	}
}

// Without lockout the mailbox-auth jail keeps Zimbra's fail2ban guidance; with a
// lockout of 3 it bans at 2; a lone server gets no farm.
func TestSetupFollowsTheLockout(t *testing.T) {
	d := &Directory{Servers: []Server{{Name: "one.test", Services: []string{"mailbox", "mta"}}}}
	in := Install{Product: "Zimbra", Root: "/opt/zimbra", Syslog: "/var/log/zimbra.log"}
	for _, c := range []struct {
		lock       Lockout
		retry, win string
	}{
		{Lockout{MaxFailures: 10}, "maxretry = 5", `findtime = "5m"`},
		{Lockout{Enabled: true, MaxFailures: 3, FailureLifetime: "30m"}, "maxretry = 2", `findtime = "30m"`},
		{Lockout{Enabled: true, MaxFailures: 20, FailureLifetime: "1d"}, "maxretry = 5", `findtime = "1d"`},
	} {
		d.Lockout = c.lock
		p, err := Setup(Host{Install: in, Name: "one.test", Directory: d})
		if err != nil {
			t.Fatal(err)
		}
		i := strings.Index(p.Config, "[jails.zimbra-mailbox-auth]")
		jail := p.Config[i : i+200]
		if !strings.Contains(jail, c.retry) || !strings.Contains(jail, c.win) {
			t.Errorf("lockout %+v: want %s, %s in\n%s", c.lock, c.retry, c.win, jail)
		}
		if strings.Contains(p.Config, "[farm]") {
			t.Errorf("a lone server got a farm:\n%s", p.Config)
		}
	}
	if _, err := Setup(Host{Install: in, Name: "other.test", Directory: d}); err == nil {
		t.Error("a host the directory does not list: no error")
	}
}

func prefixStrings(ps []netip.Prefix) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}
