package farm

import (
	"encoding/json"
	"testing"

	"github.com/nats-io/nkeys"
)

// BenchmarkSealOpen reports what signing a ban, and checking it, costs: each host
// checks every ban of the farm once.
func BenchmarkSealOpen(b *testing.B) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	s, _ := newSigner("mta1", kp)
	k, _ := loadKeys(map[string]string{"mta1": pub})
	body, _ := json.Marshal(banValue{V: 1, Jail: "sasl", Addr: "203.0.113.5", At: 1, Until: 2, By: "mta1", Why: "5 failures across the farm"})
	b.Run("seal", func(b *testing.B) {
		for b.Loop() {
			s.seal(body)
		}
	})
	sealed := s.seal(body)
	b.Run("open", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := k.open(sealed); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A value sealed by a node opens with the farm's keys, and one changed after, or signed
// by a node of no list, does not.
func TestSealOpen(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	other, _ := nkeys.CreateUser()
	s, err := newSigner("mta1", kp)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := loadKeys(map[string]string{"mta1": pub})
	sealed := s.seal([]byte(`{"by":"mta1"}`))
	if body, node, err := k.open(sealed); err != nil || node != "mta1" || string(body) != `{"by":"mta1"}` {
		t.Fatalf("open: %s %s %v", body, node, err)
	}
	var e envelope
	json.Unmarshal(sealed, &e)
	e.Body = json.RawMessage(`{"by":"mta2"}`)
	changed, _ := json.Marshal(e)
	if _, _, err := k.open(changed); err == nil {
		t.Error("a body changed after signing opened")
	}
	intruder, _ := newSigner("mta1", other)
	if _, _, err := k.open(intruder.seal([]byte(`{}`))); err == nil {
		t.Error("a value signed with another key opened")
	}
	if _, _, err := k.open([]byte(`{"by":"mta1"}`)); err == nil {
		t.Error("an unsigned value opened")
	}
}
