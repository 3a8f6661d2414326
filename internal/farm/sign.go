package farm

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/logban/logban/internal/farmkeys"
)

// Every value a node writes to the farm (a ban, its node entry) is signed with the
// node's own nkey, the key it signs in with, and checked by every reader against the
// farm's list of node keys ([farm] nodes): NATS permissions guard subjects, not what a
// value says, so without it a host could write {"by":"mta2"} and frame mta2, or announce
// itself as mta2. A value whose signature fails is refused, logged and counted.
//
// A value travels as an envelope: the value's JSON exactly as signed, the node, and the
// signature of those bytes.
type envelope struct {
	Body json.RawMessage `json:"body"`
	Node string          `json:"node"`
	Sig  []byte          `json:"sig"`
}

// signer signs this node's values; nil without a key. It holds the private key the nkey
// seed derives, derived once: nkeys derives it again at every signature, half of what a
// signature costs.
type signer struct {
	node string
	priv ed25519.PrivateKey
}

// newSigner returns node's signer with kp's key.
func newSigner(node string, kp nkeys.KeyPair) (*signer, error) {
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	_, raw, err := nkeys.DecodeSeed(seed)
	if err != nil {
		return nil, err
	}
	if len(raw) != ed25519.SeedSize {
		return nil, fmt.Errorf("an nkey seed of %d bytes, not %d", len(raw), ed25519.SeedSize)
	}
	return &signer{node: node, priv: ed25519.NewKeyFromSeed(raw)}, nil
}

// keys checks values against the farm's node keys; nil without a list, when values are
// taken unsigned (a farm not yet given its list: -check warns).
type keys map[string]nkeys.KeyPair

// errForged reports a value whose signature does not hold.
var errForged = errors.New("signature does not hold")

// loadSigner reads this node's signing key: its nkey seed, or the seed in its NATS
// credentials file. It returns nil without either.
func loadSigner(node, seedFile, credsFile string) (*signer, error) {
	kp, err := farmkeys.LoadKey(seedFile, credsFile)
	if err != nil || kp == nil {
		return nil, err
	}
	return newSigner(node, kp)
}

// loadKeys reads the farm's node keys, public nkeys by node name.
func loadKeys(nodes map[string]string) (keys, error) {
	if len(nodes) == 0 {
		return nil, nil
	}
	out := keys{}
	for name, pub := range nodes {
		kp, err := nkeys.FromPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("node %s's key %q: %w", name, pub, err)
		}
		out[name] = kp
	}
	return out, nil
}

// seal returns body as this node writes it: signed if the node has a key.
func (s *signer) seal(body []byte) []byte {
	if s == nil {
		return body
	}
	out, _ := json.Marshal(envelope{Body: body, Node: s.node, Sig: ed25519.Sign(s.priv, body)})
	return out
}

// open returns the body of a value and the node that signed it. With the farm's keys,
// only a value signed by a node of the list, whose signature holds, is opened; without
// them, an unsigned value is taken as it is (its node "").
func (k keys) open(data []byte) (body []byte, node string, err error) {
	var e envelope
	if !strings.HasPrefix(strings.TrimSpace(string(data[:min(len(data), 16)])), `{"body"`) || json.Unmarshal(data, &e) != nil || len(e.Body) == 0 {
		if k != nil {
			return nil, "", fmt.Errorf("unsigned: %w", errForged)
		}
		return data, "", nil
	}
	if k == nil {
		return e.Body, e.Node, nil
	}
	kp, ok := k[e.Node]
	if !ok {
		return nil, e.Node, fmt.Errorf("signed by %q, not a node of the farm: %w", e.Node, errForged)
	}
	if kp.Verify(e.Body, e.Sig) != nil {
		return nil, e.Node, fmt.Errorf("signed as %q with another key: %w", e.Node, errForged)
	}
	return e.Body, e.Node, nil
}
