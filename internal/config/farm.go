package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Farm is the [farm] table: the NATS JetStream cluster this host shares failures and bans
// through, and how it signs in. Nil in a Config without one: then nothing dials.
type Farm struct {
	// Name prefixes the farm's bucket and streams: one farm, one name.
	Name string
	// Node is this host's name in the farm (default: the host name).
	Node string
	// Servers are the NATS URLs dialled; with Embedded and none given, its own.
	Servers []string
	// Creds is a NATS credentials file; NKeySeed an nkey seed file; User and Password a
	// plain login. At most one way.
	Creds, NKeySeed, User, Password string
	// TLSCA verifies the servers; TLSCert and TLSKey are this host's client certificate.
	TLSCA, TLSCert, TLSKey string
	// Enforce applies the bans other hosts decide through this host's actions.
	Enforce bool
	// Replicas is how many servers keep each bucket and stream (1, 3 or 5).
	Replicas int
	// ShareIgnoreIP publishes this host's ignoreip and trusted_proxies with its own
	// addresses, so that no host of the farm bans them.
	ShareIgnoreIP bool
	// Embedded, if set, runs a NATS server inside ban-server.
	Embedded *Embedded
}

// Embedded is the [farm.embedded] table: a NATS server run inside ban-server, a seed of a
// small farm's cluster.
type Embedded struct {
	Listen        string   // host:port clients dial
	ClusterListen string   // host:port the other seeds' routes dial; "" for a lone server
	Routes        []string // nats://host:port of the other seeds' cluster_listen
	StoreDir      string   // where JetStream keeps its files
}

// A jail's farm modes.
const (
	// FarmCount adds the jail's failures up across the farm, and shares its bans.
	FarmCount = "count"
	// FarmBans shares the jail's bans; each host counts its failures alone.
	FarmBans = "bans"
	// FarmLocal keeps everything of the jail on this host.
	FarmLocal = "local"
)

var farmModes = []string{FarmCount, FarmBans, FarmLocal}

// DefaultStoreDir is where an embedded NATS server keeps its files.
const DefaultStoreDir = "/var/lib/logban/nats"

type farmData struct {
	Name          *string       `toml:"name"`
	Node          *string       `toml:"node"`
	Servers       *[]string     `toml:"servers"`
	Creds         *string       `toml:"creds"`
	NKeySeed      *string       `toml:"nkey_seed"`
	User          *string       `toml:"user"`
	Password      *string       `toml:"password"`
	TLSCA         *string       `toml:"tls_ca"`
	TLSCert       *string       `toml:"tls_cert"`
	TLSKey        *string       `toml:"tls_key"`
	Enforce       *bool         `toml:"enforce"`
	Replicas      *int          `toml:"replicas"`
	ShareIgnoreIP *bool         `toml:"share_ignoreip"`
	Embedded      *embeddedData `toml:"embedded"`
}

type embeddedData struct {
	Listen        string   `toml:"listen"`
	ClusterListen string   `toml:"cluster_listen"`
	Routes        []string `toml:"routes"`
	StoreDir      string   `toml:"store_dir"`
}

// farmName is what a farm, node or farm jail may be called: it becomes part of NATS
// subjects, stream names and keys.
var farmName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// NodeName turns a host name into a node name: dots become dashes.
func NodeName(host string) string {
	return strings.Map(func(r rune) rune {
		if r == '.' || !farmName.MatchString(string(r)) {
			return '-'
		}
		return r
	}, host)
}

// buildFarm checks the merged [farm] table d, set last in file.
func (l *loader) buildFarm(file string, d farmData) *Farm {
	f := &Farm{Enforce: true, Replicas: 3}
	bad := func(key, format string, args ...any) { l.fail(file, 0, "farm."+key, format, args...) }
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	f.Name = str(d.Name)
	if !farmName.MatchString(f.Name) {
		bad("name", "%q: name the farm with 1 to 64 letters, digits, '-' or '_' (it prefixes the farm's NATS bucket and streams), like name = \"mailfarm\"", f.Name)
	}
	if f.Node = str(d.Node); f.Node == "" {
		host, _ := os.Hostname()
		f.Node = NodeName(host)
	}
	if !farmName.MatchString(f.Node) {
		bad("node", "%q: name this host with 1 to 64 letters, digits, '-' or '_', like node = \"mta1\"", f.Node)
	}
	f.Creds, f.NKeySeed = l.abs(str(d.Creds)), l.abs(str(d.NKeySeed))
	f.User, f.Password = str(d.User), str(d.Password)
	ways := 0
	for _, s := range []string{f.Creds, f.NKeySeed, f.User} {
		if s != "" {
			ways++
		}
	}
	if ways > 1 {
		bad("creds", "give one way to sign in: creds, nkey_seed, or user and password")
	}
	if f.Password != "" && f.User == "" {
		bad("password", "a password needs a user")
	}
	f.TLSCA, f.TLSCert, f.TLSKey = l.abs(str(d.TLSCA)), l.abs(str(d.TLSCert)), l.abs(str(d.TLSKey))
	if (f.TLSCert == "") != (f.TLSKey == "") {
		bad("tls_cert", "tls_cert and tls_key go together")
	}
	for _, file := range []struct{ key, path string }{ // in the table's order, so errors come in it
		{"creds", f.Creds}, {"nkey_seed", f.NKeySeed}, {"tls_ca", f.TLSCA}, {"tls_cert", f.TLSCert}, {"tls_key", f.TLSKey},
	} {
		if file.path != "" {
			if _, err := os.Stat(file.path); err != nil {
				bad(file.key, "%v", err)
			}
		}
	}
	if d.Enforce != nil {
		f.Enforce = *d.Enforce
	}
	if d.ShareIgnoreIP != nil {
		f.ShareIgnoreIP = *d.ShareIgnoreIP
	}
	if e := d.Embedded; e != nil {
		f.Embedded = &Embedded{Listen: e.Listen, ClusterListen: e.ClusterListen, Routes: e.Routes, StoreDir: l.abs(e.StoreDir)}
		if f.Embedded.StoreDir == "" {
			f.Embedded.StoreDir = DefaultStoreDir
		}
		if _, _, err := net.SplitHostPort(e.Listen); err != nil {
			bad("embedded.listen", "%q: want host:port, like \"127.0.0.1:4222\"", e.Listen)
		}
		if e.ClusterListen != "" {
			if _, _, err := net.SplitHostPort(e.ClusterListen); err != nil {
				bad("embedded.cluster_listen", "%q: want host:port, like \"0.0.0.0:6222\"", e.ClusterListen)
			}
		} else if len(e.Routes) > 0 {
			bad("embedded.cluster_listen", "routes need a cluster_listen, the address the other seeds' routes dial")
		}
		for i, r := range e.Routes {
			if u, err := url.Parse(r); err != nil || u.Scheme != "nats" || u.Host == "" {
				bad(fmt.Sprintf("embedded.routes[%d]", i), "%q: want nats://host:port of another seed's cluster_listen", r)
			}
		}
		if len(e.Routes) == 0 {
			f.Replicas = 1 // a lone server keeps one copy
		}
	}
	if d.Servers != nil {
		f.Servers = slices.Clone(*d.Servers)
	}
	if len(f.Servers) == 0 && f.Embedded != nil {
		f.Servers = []string{"nats://" + f.Embedded.Listen}
	}
	if len(f.Servers) == 0 {
		bad("servers", "no NATS servers; list them, like servers = [\"nats://nats1:4222\"], or run one with [farm.embedded]")
	}
	for i, s := range f.Servers {
		if u, err := url.Parse(s); err != nil || u.Host == "" || !slices.Contains([]string{"nats", "tls", "ws", "wss"}, u.Scheme) {
			bad(fmt.Sprintf("servers[%d]", i), "%q: want a NATS URL, like \"nats://nats1:4222\" or \"tls://nats1:4222\"", s)
		}
	}
	if d.Replicas != nil {
		f.Replicas = *d.Replicas
		if !slices.Contains([]int{1, 3, 5}, f.Replicas) {
			bad("replicas", "must be 1, 3 or 5, got %d", f.Replicas)
		}
	}
	return f
}
