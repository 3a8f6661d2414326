// Package slapdtest runs a real OpenLDAP server (Debian's slapd) for tests: on loopback,
// in a temporary folder, with the part of Zimbra's schema that logban reads, stopped
// when the test ends.
package slapdtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logban/logban/internal/testenv"
)

// The directory's administrator, as Zimbra's localconfig names it (zimbra_ldap_userdn).
const (
	BindDN   = "uid=zimbra,cn=admins,cn=zimbra"
	Password = "s3cret-ldap-pw"
)

// schema is the part of Zimbra's schema logban reads: the attributes with the ids of
// zm-mailbox's store/conf/attrs/zimbra-attrs.xml under Zimbra's OID arc
// (1.3.6.1.4.1.19348.2.1.ID), and its server, global configuration and class of service
// object classes, made structural here to stand alone.
const schema = `
attributetype ( 1.3.6.1.4.1.19348.2.1.220 NAME 'zimbraServiceEnabled'
	EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{256} )
attributetype ( 1.3.6.1.4.1.19348.2.1.65 NAME 'zimbraServiceHostname'
	EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{256} SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.19348.2.1.1025 NAME 'zimbraMailTrustedIP'
	EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.19348.2.1.1427 NAME 'zimbraHttpThrottleSafeIPs'
	EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.19348.2.1.1553 NAME 'zimbraMtaSmtpdClientRestrictions'
	EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.19348.2.1.1554 NAME 'zimbraMtaSmtpdDataRestrictions'
	EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.19348.2.1.378 NAME 'zimbraPasswordLockoutEnabled'
	EQUALITY booleanMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.7 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.19348.2.1.380 NAME 'zimbraPasswordLockoutMaxFailures'
	EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.19348.2.1.381 NAME 'zimbraPasswordLockoutFailureLifetime'
	EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{32} SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.19348.2.2.3 NAME 'zimbraServer' STRUCTURAL
	MUST cn MAY ( zimbraServiceEnabled $ zimbraServiceHostname $ zimbraMailTrustedIP $
	zimbraHttpThrottleSafeIPs $ zimbraMtaSmtpdClientRestrictions $ zimbraMtaSmtpdDataRestrictions ) )
objectclass ( 1.3.6.1.4.1.19348.2.2.2 NAME 'zimbraGlobalConfig' STRUCTURAL
	MUST cn MAY ( zimbraMailTrustedIP $ zimbraHttpThrottleSafeIPs $
	zimbraMtaSmtpdClientRestrictions $ zimbraMtaSmtpdDataRestrictions ) )
objectclass ( 1.3.6.1.4.1.19348.2.2.4 NAME 'zimbraCOS' STRUCTURAL
	MUST cn MAY ( zimbraPasswordLockoutEnabled $ zimbraPasswordLockoutMaxFailures $
	zimbraPasswordLockoutFailureLifetime ) )
`

// Base holds the entries every Zimbra directory has: cn=zimbra, its servers and classes
// of service containers, and the global configuration.
const Base = `dn: cn=zimbra
objectClass: organizationalRole
cn: zimbra

dn: cn=servers,cn=zimbra
objectClass: organizationalRole
cn: servers

dn: cn=cos,cn=zimbra
objectClass: organizationalRole
cn: cos

dn: cn=config,cn=zimbra
objectClass: zimbraGlobalConfig
cn: config
zimbraMtaSmtpdClientRestrictions: reject_unauth_pipelining
zimbraMtaSmtpdDataRestrictions: reject_unauth_pipelining
`

// Server is a running slapd.
type Server struct {
	URL  string // ldap://127.0.0.1:PORT
	conf string
	dir  string
	cmd  *exec.Cmd
}

// Start runs slapd holding Base and then ldif's entries, until the test ends.
func Start(t testing.TB, ldif string) *Server {
	t.Helper()
	slapd := testenv.RequireTool(t, "slapd", "slapd")
	slapadd := testenv.RequireTool(t, "slapadd", "slapd")
	testenv.RequireRoot(t)
	dir := t.TempDir()
	s := &Server{dir: dir, conf: filepath.Join(dir, "slapd.conf")}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "zimbra.schema"), schema)
	write(t, s.conf, fmt.Sprintf(`include /etc/ldap/schema/core.schema
include %s
pidfile %s
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
suffix "cn=zimbra"
rootdn "%s"
rootpw %s
directory %s
maxsize 16777216
`, filepath.Join(dir, "zimbra.schema"), filepath.Join(dir, "slapd.pid"), BindDN, Password, data))
	entries := filepath.Join(dir, "entries.ldif")
	write(t, entries, Base+"\n"+ldif)
	if out, err := exec.Command(slapadd, "-f", s.conf, "-l", entries).CombinedOutput(); err != nil {
		t.Fatalf("slapadd: %v\n%s", err, out)
	}
	port := freePort(t)
	s.URL = fmt.Sprintf("ldap://127.0.0.1:%d", port)
	cmd := exec.Command(slapd, "-d", "0", "-f", s.conf, "-h", s.URL+"/")
	logf, err := os.Create(filepath.Join(dir, "slapd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("slapd: %v", err)
	}
	s.cmd = cmd
	t.Cleanup(func() {
		s.Stop()
		logf.Close()
	})
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "ldap://")); err == nil {
			c.Close()
			break
		}
		if time.Since(start) > 15*time.Second {
			text, _ := os.ReadFile(filepath.Join(dir, "slapd.log"))
			t.Fatalf("slapd does not take connections at %s:\n%s", s.URL, text)
		}
	}
	return s
}

// Stop stops the server: the directory no longer answers.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// Modify changes the directory while it runs, with ldapmodify's LDIF (changetype: add,
// modify, delete).
func (s *Server) Modify(t testing.TB, ldif string) {
	t.Helper()
	ldapmodify := testenv.RequireTool(t, "ldapmodify", "ldap-utils")
	cmd := exec.Command(ldapmodify, "-x", "-H", s.URL, "-D", BindDN, "-w", Password)
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ldapmodify: %v\n%s", err, out)
	}
}

// LocalConfig returns a localconfig.xml as Zimbra writes it (ConfigWriter: <key
// name="..."><value>...</value></key>), naming this directory, for the server host.
func (s *Server) LocalConfig(host, user string) string {
	var b strings.Builder
	b.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\n<localconfig>\n")
	for _, kv := range [][2]string{
		{"ldap_url", s.URL}, {"ldap_starttls_supported", "0"}, {"zimbra_ldap_userdn", BindDN},
		{"zimbra_ldap_password", Password}, {"zimbra_server_hostname", host}, {"zimbra_user", user},
		{"mailboxd_java_heap_size", "1024"},
	} {
		fmt.Fprintf(&b, "  <key name=\"%s\">\n    <value>%s</value>\n  </key>\n", kv[0], kv[1])
	}
	b.WriteString("</localconfig>\n")
	return b.String()
}

// InstallRoot makes an install's folder named folder (zimbra, zextras) in a temporary
// folder, with the localconfig.xml LocalConfig writes, and returns its path.
func (s *Server) InstallRoot(t testing.TB, folder, host, user string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), folder)
	if err := os.MkdirAll(filepath.Join(root, "conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(root, "conf", "localconfig.xml"), s.LocalConfig(host, user))
	return root
}

func write(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
