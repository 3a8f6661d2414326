// Package farmkeys makes a farm's keys, offline, in one folder the administrator keeps:
// the farm's certificate authority, and for each node a TLS certificate the authority
// signed (for the embedded NATS servers' client port and routes) and an nkey (the node
// signs in with it, and signs every value it writes to the farm). nodes.toml lists the
// nodes' public nkeys: every host reads it ([farm] nodes_file) to check who wrote what.
//
// What a node needs is ca.pem, NODE.pem, NODE.key, NODE.nk and nodes.toml; ca.key stays
// with the administrator. It makes files and nothing else.
package farmkeys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/nats-io/nkeys"
)

// File names in a farm's key folder.
const (
	CACert    = "ca.pem"
	CAKey     = "ca.key"
	NodesFile = "nodes.toml"
)

// NodeFiles are the files of one node, in the key folder.
type NodeFiles struct {
	Cert, Key, Seed string
	PublicKey       string // the node's public nkey, as nodes.toml lists it
}

// Files returns where node's files are in dir.
func Files(dir, node string) NodeFiles {
	return NodeFiles{Cert: filepath.Join(dir, node+".pem"), Key: filepath.Join(dir, node+".key"), Seed: filepath.Join(dir, node+".nk")}
}

var nodeName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// validity is how long certificates last: the farm's authority, and its nodes'.
const (
	caValidity   = 20 * 365 * 24 * time.Hour
	nodeValidity = 10 * 365 * 24 * time.Hour
)

// Init makes dir (mode 0700) and the farm's certificate authority in it, unless one is
// there already.
func Init(dir, farm string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, CAKey)); err == nil {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "logban farm " + farm + " authority"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if err := writeKey(filepath.Join(dir, CAKey), key); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, CACert), "CERTIFICATE", der, 0o644)
}

// AddNode makes node's certificate, for its name, localhost and hosts (names or
// addresses the others reach it by), and its nkey, and lists its public key in
// nodes.toml. A node made before keeps its nkey (hosts check its values by it) and
// gets a new certificate.
func AddNode(dir, node string, hosts []string) (NodeFiles, error) {
	if !nodeName.MatchString(node) {
		return NodeFiles{}, fmt.Errorf("node %q: a node's name has 1 to 64 letters, digits, '-' or '_'", node)
	}
	ca, caKey, err := loadCA(dir)
	if err != nil {
		return NodeFiles{}, err
	}
	nf := Files(dir, node)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return NodeFiles{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: node},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(nodeValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{node, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return NodeFiles{}, err
	}
	if err := writeKey(nf.Key, key); err != nil {
		return NodeFiles{}, err
	}
	if err := writePEM(nf.Cert, "CERTIFICATE", der, 0o644); err != nil {
		return NodeFiles{}, err
	}
	kp, err := loadOrMakeSeed(nf.Seed)
	if err != nil {
		return NodeFiles{}, err
	}
	if nf.PublicKey, err = kp.PublicKey(); err != nil {
		return NodeFiles{}, err
	}
	nodes, err := ReadNodes(filepath.Join(dir, NodesFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return NodeFiles{}, err
	}
	if nodes == nil {
		nodes = map[string]string{}
	}
	nodes[node] = nf.PublicKey
	return nf, writeNodes(filepath.Join(dir, NodesFile), nodes)
}

// LoadKey reads a node's nkey: from its seed file, else from the seed in its NATS
// credentials file. Both empty: nil, and no error.
func LoadKey(seedFile, credsFile string) (nkeys.KeyPair, error) {
	for _, f := range []struct{ what, path string }{{"nkey_seed", seedFile}, {"creds", credsFile}} {
		if f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return nil, err
		}
		kp, err := nkeys.ParseDecoratedNKey(b)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", f.what, f.path, err)
		}
		return kp, nil
	}
	return nil, nil
}

// Settings returns the [farm] keys that point node at its files in dir, one a line, as
// a node's configuration names them.
func Settings(dir, node string) string {
	nf := Files(dir, node)
	return fmt.Sprintf("nkey_seed = %q\ntls_ca = %q\ntls_cert = %q\ntls_key = %q\nnodes_file = %q\n",
		nf.Seed, filepath.Join(dir, CACert), nf.Cert, nf.Key, filepath.Join(dir, NodesFile))
}

// ReadNodes reads a nodes file: node = "public nkey", one a line.
func ReadNodes(path string) (map[string]string, error) {
	nodes := map[string]string{}
	if _, err := toml.DecodeFile(path, &nodes); err != nil {
		return nil, err
	}
	return nodes, nil
}

func writeNodes(path string, nodes map[string]string) error {
	var b bytes.Buffer
	b.WriteString("# The farm's nodes and their public keys (ban-client farm add-node). Every host of the\n# farm reads this file ([farm] nodes_file) to check which node wrote what.\n")
	for _, name := range slices.Sorted(maps.Keys(nodes)) {
		fmt.Fprintf(&b, "%s = %q\n", name, nodes[name])
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

func loadOrMakeSeed(path string) (nkeys.KeyPair, error) {
	if b, err := os.ReadFile(path); err == nil {
		return nkeys.ParseDecoratedNKey(b)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	return kp, os.WriteFile(path, append(seed, '\n'), 0o600)
}

func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACert))
	if err != nil {
		return nil, nil, fmt.Errorf("the farm's authority: %w (run ban-client farm init %s first)", err, dir)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKey))
	if err != nil {
		return nil, nil, fmt.Errorf("the farm's authority's key: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("%s: not PEM", dir)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	return cert, key, err
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der, 0o600)
}

func writePEM(path, kind string, der []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: kind, Bytes: der}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
