package farm

import "github.com/nats-io/nats.go/jetstream"

// Fault lays wrap over the farm's JetStream and bans bucket once it joins: a test's
// stand-in for servers answering as they do in a partition. Call it before Run.
func Fault(f *Farm, wrap func(jetstream.JetStream, jetstream.KeyValue) (jetstream.JetStream, jetstream.KeyValue)) {
	f.wrap = func(h *handles) { h.js, h.bans = wrap(h.js, h.bans) }
}

// The bounds, for the tests of package farm_test.
const (
	MaxBanValue   = maxBanValue
	MaxBansBytes  = maxBansBytes
	MaxNodeValue  = maxNodeValue
	MaxNodesBytes = maxNodesBytes
	MaxCountMsgs  = maxCountMsgs
	MaxCountBytes = maxCountBytes
	MaxCountMsg   = maxCountMsg
)
