package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/logban/logban/internal/farmkeys"
)

// publicKeyOf returns the public key of the nkey in seedFile, or in credsFile's seed,
// or "" if neither can be read.
func publicKeyOf(seedFile, credsFile string) string {
	kp, err := farmkeys.LoadKey(seedFile, credsFile)
	if err != nil || kp == nil {
		return ""
	}
	pub, _ := kp.PublicKey()
	return pub
}

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
	// Nodes are the farm's node keys, public nkeys by node name (made by ban-client
	// farm add-node): every value a node writes is signed with its key and checked
	// against them. Without them, values are taken unsigned.
	Nodes map[string]string
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
	Name          *string            `toml:"name"`
	Node          *string            `toml:"node"`
	Servers       *[]string          `toml:"servers"`
	Creds         *string            `toml:"creds"`
	NKeySeed      *string            `toml:"nkey_seed"`
	User          *string            `toml:"user"`
	Password      *string            `toml:"password"`
	TLSCA         *string            `toml:"tls_ca"`
	TLSCert       *string            `toml:"tls_cert"`
	TLSKey        *string            `toml:"tls_key"`
	Enforce       *bool              `toml:"enforce"`
	Replicas      *int               `toml:"replicas"`
	ShareIgnoreIP *bool              `toml:"share_ignoreip"`
	Embedded      *embeddedData      `toml:"embedded"`
	Nodes         *map[string]string `toml:"nodes"`
	NodesFile     *string            `toml:"nodes_file"`
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
	if d.NodesFile != nil {
		path := l.abs(*d.NodesFile)
		nodes, err := farmkeys.ReadNodes(path)
		if err != nil {
			bad("nodes_file", "%v", err)
		}
		if d.Nodes != nil {
			maps.Copy(nodes, *d.Nodes)
		}
		d.Nodes = &nodes
	}
	if d.Nodes != nil {
		f.Nodes = maps.Clone(*d.Nodes)
		for _, name := range slices.Sorted(maps.Keys(f.Nodes)) {
			if !farmName.MatchString(name) {
				bad("nodes."+name, "%q: a node's name has 1 to 64 letters, digits, '-' or '_'", name)
			}
			if !nkeys.IsValidPublicUserKey(f.Nodes[name]) {
				bad("nodes."+name, "%q is not a node's public key (a U... nkey, as ban-client farm add-node prints it)", f.Nodes[name])
			}
		}
		if pub, ok := f.Nodes[f.Node]; !ok {
			bad("nodes", "this node, %q, is not in the farm's list: add the line ban-client farm add-node printed for it", f.Node)
		} else if own := publicKeyOf(f.NKeySeed, f.Creds); own != "" && own != pub {
			bad("nodes."+f.Node, "is not the public key of this node's nkey_seed or creds (%s): the list or the key file is another node's", own)
		}
	}
	if d.Enforce != nil {
		f.Enforce = *d.Enforce
	}
	if d.ShareIgnoreIP != nil {
		f.ShareIgnoreIP = *d.ShareIgnoreIP
	}
	if e := d.Embedded; e != nil {
		// An embedded server admits only the farm's nodes, each by its key, over TLS,
		// and routes only to servers whose certificate the farm's CA signed.
		var missing []string
		for _, m := range []struct{ key, val string }{{"nkey_seed", f.NKeySeed}, {"tls_ca", f.TLSCA}, {"tls_cert", f.TLSCert}, {"tls_key", f.TLSKey}} {
			if m.val == "" {
				missing = append(missing, m.key)
			}
		}
		if len(f.Nodes) == 0 {
			missing = append(missing, "nodes")
		}
		if len(missing) > 0 {
			bad("embedded", "an embedded NATS server admits no one without the farm's keys: add %s to [farm] (made by ban-client farm init and farm add-node %s)", strings.Join(missing, ", "), f.Node)
		}
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

// warnings says what in f is likely a mistake, though a host runs with it: no list of
// node keys (values are taken unsigned, so a host can pose as another), and
// credentials sent over a plaintext connection to a server elsewhere.
func (f *Farm) warnings() []string {
	var out []string
	if len(f.Nodes) == 0 {
		out = append(out, "farm.nodes: no list of the farm's node keys: values are taken unsigned, so any host may write as another (frame it, or announce its addresses); make keys with ban-client farm init and farm add-node")
	}
	secret := f.Creds != "" || f.NKeySeed != "" || f.Password != ""
	for i, s := range f.Servers {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "nats" && u.Scheme != "ws") || f.TLSCA != "" {
			continue
		}
		host := u.Hostname()
		if ip, err := netip.ParseAddr(host); (err == nil && ip.IsLoopback()) || host == "localhost" {
			continue
		}
		if secret || u.User != nil {
			out = append(out, fmt.Sprintf("farm.servers[%d]: %s is plaintext: the farm's traffic, and a password, cross the network readable; use tls:// and tls_ca", i, redactURL(s)))
		}
	}
	return out
}

// redactURL hides a URL's password.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return s
}
