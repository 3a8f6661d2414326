package farmkeys

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nkeys"
)

// A node's certificate is the farm authority's, for the node's name and the hosts
// given, for server and client alike; its nkey is the one nodes.toml lists; its keys
// and the authority's are its owner's alone; and adding a node again keeps its nkey.
func TestAddNode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "farm")
	if err := Init(dir, "mailfarm"); err != nil {
		t.Fatal(err)
	}
	nf, err := AddNode(dir, "mta1", []string{"mta1.example.com", "192.0.2.10"})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(filepath.Join(dir, CACert))
	pool.AppendCertsFromPEM(caPEM)
	certPEM, _ := os.ReadFile(nf.Cert)
	b, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mta1", "mta1.example.com", "192.0.2.10", "127.0.0.1"} {
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: name, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("%s, usage %v: %v", name, usage, err)
			}
		}
	}
	seed, _ := os.ReadFile(nf.Seed)
	kp, err := nkeys.ParseDecoratedNKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	nodes, err := ReadNodes(filepath.Join(dir, NodesFile))
	if err != nil || nodes["mta1"] != pub || pub != nf.PublicKey {
		t.Errorf("nodes.toml %v, %v; the seed's key %s", nodes, err, pub)
	}
	for _, f := range []string{filepath.Join(dir, CAKey), nf.Key, nf.Seed} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want 0600", filepath.Base(f), fi.Mode(), err)
		}
	}
	again, err := AddNode(dir, "mta1", nil)
	if err != nil || again.PublicKey != pub {
		t.Errorf("added again: key %s, %v; want %s kept", again.PublicKey, err, pub)
	}
	if _, err := AddNode(dir, "mta1;rm", nil); err == nil {
		t.Error("a node name that is no subject token was taken")
	}
}
