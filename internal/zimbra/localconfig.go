package zimbra

import (
	"encoding/xml"
	"fmt"
	"os"
	"strings"
)

// LocalConfig is an install's localconfig.xml: each key's value.
type LocalConfig map[string]string

// maxLocalConfig is the largest localconfig.xml read; Zimbra's are a few KiB.
const maxLocalConfig = 4 << 20

// ReadLocalConfig reads a localconfig.xml, as Zimbra writes it:
//
//	<localconfig>
//	  <key name="ldap_url">
//	    <value>ldap://ldap.example.com:389</value>
//	  </key>
//	</localconfig>
func ReadLocalConfig(path string) (LocalConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > maxLocalConfig {
		return nil, fmt.Errorf("%s: %d bytes, more than a localconfig.xml holds", path, st.Size())
	}
	var doc struct {
		XMLName xml.Name `xml:"localconfig"`
		Keys    []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value"`
		} `xml:"key"`
	}
	if err := xml.NewDecoder(f).Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	lc := LocalConfig{}
	for _, k := range doc.Keys {
		lc[k.Name] = strings.TrimSpace(k.Value)
	}
	return lc, nil
}

// LDAP returns how to reach the farm's directory from lc: its URLs (ldap_url, space
// separated), the DN and password to bind with, and whether to start TLS.
func (lc LocalConfig) LDAP() (Access, error) {
	a := Access{URLs: strings.Fields(lc["ldap_url"]), BindDN: lc["zimbra_ldap_userdn"],
		Password: lc["zimbra_ldap_password"], StartTLS: lc["ldap_starttls_supported"] == "1"}
	switch {
	case len(a.URLs) == 0:
		return a, fmt.Errorf("localconfig: no ldap_url")
	case a.BindDN == "":
		return a, fmt.Errorf("localconfig: no zimbra_ldap_userdn")
	case a.Password == "":
		return a, fmt.Errorf("localconfig: no zimbra_ldap_password")
	}
	return a, nil
}
