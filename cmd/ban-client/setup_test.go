package main

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logban/logban/internal/config"
	"github.com/logban/logban/internal/farmkeys"
	"github.com/logban/logban/internal/slapdtest"
)

// setup zimbra on a Zimbra MTA of a two-server farm, against a real OpenLDAP server: it
// says what it found and chose, writes a configuration that loads, prints the Postfix
// wiring with the server's present restrictions kept, and shows the LDAP password
// nowhere.
func TestSetupZimbra(t *testing.T) {
	ldap := slapdtest.Start(t, `dn: cn=mta1.farm.test,cn=servers,cn=zimbra
objectClass: zimbraServer
cn: mta1.farm.test
zimbraServiceEnabled: mta
zimbraMtaSmtpdClientRestrictions: reject_unauth_pipelining, reject_unknown_client_hostname

dn: cn=mbox1.farm.test,cn=servers,cn=zimbra
objectClass: zimbraServer
cn: mbox1.farm.test
zimbraServiceEnabled: mailbox
`)
	root := ldap.InstallRoot(t, "zimbra", "mta1.farm.test", "zimbra")
	keys := filepath.Join(t.TempDir(), "farm")
	if err := farmkeys.Init(keys, "zimbra"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"mta1", "mbox1"} {
		if _, err := farmkeys.AddNode(keys, n, nil); err != nil {
			t.Fatal(err)
		}
	}
	was := resolve
	t.Cleanup(func() { resolve = was })
	resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
		switch host {
		case "mta1.farm.test":
			return []netip.Addr{netip.MustParseAddr("192.0.2.11")}, nil
		case "mbox1.farm.test":
			return []netip.Addr{netip.MustParseAddr("192.0.2.31")}, nil
		}
		return nil, errors.New("no such host")
	}
	out := filepath.Join(t.TempDir(), "logban.toml")
	code, stdout, stderr := client("setup", "zimbra", "--root", root, "--keys", keys, "--postfix", "-o", out)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{"found: server mta1.farm.test runs mta", "chose: jail zimbra-submission (this host runs mta)",
		"chose: [farm]", "ban-client farm init " + keys + " --farm zimbra mbox1=mbox1.farm.test mta1=mta1.farm.test", "wrote " + out} {
		if !strings.Contains(stderr, want) {
			t.Errorf("no %q in the report:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "check:") {
		t.Errorf("the configuration written does not check:\n%s", stderr)
	}
	for _, want := range []string{
		`zmprov ms mta1.farm.test zimbraMtaSmtpdClientRestrictions "check_policy_service { unix:private/logban, default_action=DUNNO }, reject_unauth_pipelining, reject_unknown_client_hostname"`,
		`zmprov ms mta1.farm.test zimbraMtaSmtpdDataRestrictions "check_policy_service { unix:private/logban, default_action=DUNNO }, reject_unauth_pipelining"`,
		`-o { smtpd_data_restrictions = check_policy_service { unix:private/logban, default_action=DUNNO } }`,
		`#   -o { smtpd_client_restrictions = check_policy_service { unix:private/logban, default_action=DUNNO }, permit_sasl_authenticated, reject }`,
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("no %q in the Postfix wiring:\n%s", want, stdout)
		}
	}
	text, _ := os.ReadFile(out)
	if strings.Contains(stdout+stderr+string(text), slapdtest.Password) {
		t.Error("the LDAP password is shown or written")
	}
	cfg, err := config.Load(out)
	if err != nil {
		t.Fatalf("-check refuses what setup wrote: %v", err)
	}
	if cfg.Policy == nil || cfg.Policy.Listen != "unix:"+filepath.Join(root, "data/postfix/spool/private/logban") || cfg.Farm == nil || cfg.Farm.Node != "mta1" {
		t.Errorf("policy %+v, farm %+v", cfg.Policy, cfg.Farm)
	}

	// Not an install: a clear error, exit 1.
	if code, _, stderr := client("setup", "zimbra", "--root", t.TempDir()); code != exitRefused || !strings.Contains(stderr, "no conf/localconfig.xml") {
		t.Errorf("not an install: exit %d, %s", code, stderr)
	}
}
