// Package zimbra reads what a Zimbra or Carbonio farm already knows of itself: the
// install's local configuration (conf/localconfig.xml) and the farm's LDAP directory
// (its servers, what each runs, the addresses it trusts or spares, how many failures
// lock an account), and turns it into logban's configuration.
//
// Where each fact comes from:
//   - localconfig.xml's layout (<localconfig><key name="..."><value>...) and its keys
//     ldap_url, zimbra_ldap_userdn, zimbra_ldap_password, zimbra_server_hostname and
//     ldap_starttls_supported: Zimbra's zm-mailbox, common/.../localconfig/LocalConfig.java
//     and LC.java; Carbonio keeps the same file under /opt/zextras/conf.
//   - The attributes, their cardinality and inheritance: zm-mailbox,
//     store/conf/attrs/zimbra-attrs.xml (zimbraServiceEnabled, zimbraMailTrustedIP,
//     zimbraHttpThrottleSafeIPs, zimbraPasswordLockout*, zimbraMtaSmtpd*Restrictions).
//   - Where they live: servers under cn=servers,cn=zimbra, the global configuration at
//     cn=config,cn=zimbra, the default class of service at cn=default,cn=cos,cn=zimbra.
//   - Log paths: Zimbra's and Carbonio's guides (Carbonio's tech-doc "Log files":
//     /var/log/carbonio.log for the MTA's syslog, /opt/zextras/log for the rest).
package zimbra

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Install is a Zimbra or Carbonio installation on this host.
type Install struct {
	// Product is "Zimbra" or "Carbonio".
	Product string
	// Root is the install's folder: /opt/zimbra, /opt/zextras, or the one given.
	Root string
	// Syslog is the file the MTA (Postfix) logs to through syslog.
	Syslog string
}

// Roots are the folders Find looks in, in order, when given none.
var Roots = []string{"/opt/zimbra", "/opt/zextras"}

// Find returns the installation at root, or with root "", the first of Roots that holds
// one: a folder with conf/localconfig.xml.
func Find(root string) (Install, error) {
	roots := Roots
	if root != "" {
		roots = []string{root}
	}
	for _, r := range roots {
		lc := filepath.Join(r, "conf", "localconfig.xml")
		if _, err := os.Stat(lc); err == nil {
			return installAt(r), nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return Install{}, err
		}
	}
	if root != "" {
		return Install{}, fmt.Errorf("%s: no conf/localconfig.xml: not a Zimbra or Carbonio install", root)
	}
	return Install{}, fmt.Errorf("no Zimbra (/opt/zimbra) or Carbonio (/opt/zextras) install here; name one with --root")
}

func installAt(root string) Install {
	in := Install{Product: "Zimbra", Root: root, Syslog: "/var/log/zimbra.log"}
	if isCarbonio(root) {
		in.Product, in.Syslog = "Carbonio", "/var/log/carbonio.log"
	}
	return in
}

// isCarbonio tells Carbonio from Zimbra: its folder is zextras, its system user is too,
// and it has a carbonio command.
func isCarbonio(root string) bool {
	if filepath.Base(root) == "zextras" {
		return true
	}
	if _, err := os.Stat(filepath.Join(root, "bin", "carbonio")); err == nil {
		return true
	}
	lc, err := ReadLocalConfig(filepath.Join(root, "conf", "localconfig.xml"))
	return err == nil && lc["zimbra_user"] == "zextras"
}

// LocalConfig returns the path of the install's localconfig.xml.
func (in Install) LocalConfig() string { return filepath.Join(in.Root, "conf", "localconfig.xml") }

// Log returns the path of one of the install's own logs (mailbox.log, audit.log, ...).
func (in Install) Log(name string) string { return filepath.Join(in.Root, "log", name) }

// JailPrefix is what the install's jails are named after: "zimbra" or "carbonio".
func (in Install) JailPrefix() string { return strings.ToLower(in.Product) }

// CAFile returns the install's own certificate authority, which signs its LDAP
// server's certificate, or "" if it has none.
func (in Install) CAFile() string {
	p := filepath.Join(in.Root, "conf", "ca", "ca.pem")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}
