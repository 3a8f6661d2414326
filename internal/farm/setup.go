package farm

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// handles are the farm's bucket and streams, once made or found.
type handles struct {
	js    jetstream.JetStream
	bans  jetstream.KeyValue
	nodes jetstream.KeyValue

	mu      sync.Mutex
	streams map[string]jetstream.Stream // counting streams, by jail
	tried   map[string]time.Time        // when making a missing stream was last tried
}

// Metadata every bucket and stream of a farm carries: which farm made it.
const (
	metaFarm     = "logban.farm"
	metaMaxRetry = "logban.maxretry"
	metaFindTime = "logban.findtime"
)

// markerTTL is how long an expiry's or unban's marker stays in the bans bucket: a host
// away for longer learns of it by the ban's absence instead.
const markerTTL = time.Hour

// nodeTTL is how long a node's entry outlives its last refresh.
const nodeTTL = 90 * time.Second

// Bounds of what the farm keeps, so that no publisher (a host gone wrong, or taken)
// can grow the NATS servers, or the ban-servers watching, without limit. Past a bound,
// the server refuses what is new (DiscardNew): a ban or a failure past it is counted
// on its host alone, as when the farm is away.
const (
	// maxBanValue bounds one ban's value; a signed ban takes about 400 bytes.
	maxBanValue = 2 << 10
	// maxBansBytes bounds the bans bucket: about 400,000 bans in force at once.
	maxBansBytes = 256 << 20
	// maxNodeValue and maxNodesBytes bound the nodes bucket: a node's entry holds a
	// few addresses, and a farm a few hundred nodes.
	maxNodeValue  = 4 << 10
	maxNodesBytes = 4 << 20
	// maxCountMsgs and maxCountBytes bound each counting stream (kept in memory): a
	// failure is an empty message on a subject of about 60 bytes, so 500,000 failing
	// addresses within findtime, across the farm, at most.
	maxCountMsgs  = 500_000
	maxCountBytes = 64 << 20
	// maxCountMsg bounds one message of a counting stream (they are empty).
	maxCountMsg = 1 << 10
)

// clashError reports a bucket or stream of the farm's name that the farm did not make.
type clashError struct{ name, found string }

func (e *clashError) Error() string {
	return fmt.Sprintf("NATS already holds %q, which no logban farm of this name made (%s); choose another [farm] name", e.name, e.found)
}

// setup finds or makes the farm's buckets.
func (f *Farm) setup(ctx context.Context, js jetstream.JetStream) (*handles, error) {
	// Short: a cluster still forming answers nothing, and the next try may find it formed.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	meta := map[string]string{metaFarm: f.cfg.Name}
	bans, err := f.bucket(ctx, js, jetstream.KeyValueConfig{
		Bucket: f.cfg.Name + "_bans", Description: "logban farm " + f.cfg.Name + ": bans in force",
		History: 1, Storage: jetstream.FileStorage, Replicas: f.cfg.Replicas, LimitMarkerTTL: markerTTL, Metadata: meta,
		MaxValueSize: maxBanValue, MaxBytes: maxBansBytes,
	})
	if err != nil {
		return nil, err
	}
	nodes, err := f.bucket(ctx, js, jetstream.KeyValueConfig{
		Bucket: f.cfg.Name + "_nodes", Description: "logban farm " + f.cfg.Name + ": its nodes and their addresses",
		History: 1, Storage: jetstream.FileStorage, Replicas: f.cfg.Replicas, TTL: nodeTTL, Metadata: meta,
		MaxValueSize: maxNodeValue, MaxBytes: maxNodesBytes,
		LimitMarkerTTL: markerTTL, // an entry's expiry reaches the watchers, who forget its node
	})
	if err != nil {
		return nil, err
	}
	return &handles{js: js, bans: bans, nodes: nodes, streams: map[string]jetstream.Stream{}, tried: map[string]time.Time{}}, nil
}

// bucket finds the bucket cfg names, or makes it; one the farm did not make is refused.
func (f *Farm) bucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			kv, err = js.KeyValue(ctx, cfg.Bucket) // another host made it meanwhile
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	if got := st.Metadata()[metaFarm]; got != f.cfg.Name {
		return nil, &clashError{name: cfg.Bucket, found: fmt.Sprintf("its %s is %q", metaFarm, got)}
	}
	return kv, nil
}

// failStream returns the counting stream of jail j, making it if needed with j's
// settings. A stream made before counts with its own until the hosts agree on others
// (alignSettings).
func (f *Farm) failStream(ctx context.Context, h *handles, j Jail) (jetstream.Stream, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.streams[j.Name]; ok {
		return s, nil
	}
	cfg := jetstream.StreamConfig{
		Name:                 f.cfg.Name + "_fail_" + j.Name,
		Description:          "logban farm " + f.cfg.Name + ": failures of jail " + j.Name,
		Subjects:             []string{f.failSubject(j.Name, "*")},
		Storage:              jetstream.FileStorage,
		Replicas:             f.cfg.Replicas,
		MaxAge:               j.FindTime,
		MaxMsgsPerSubject:    int64(j.MaxRetry - 1),
		MaxMsgs:              maxCountMsgs,
		MaxBytes:             maxCountBytes,
		MaxMsgSize:           maxCountMsg,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		Duplicates:           min(j.FindTime, 10*time.Minute),
		Metadata: map[string]string{
			metaFarm: f.cfg.Name, metaMaxRetry: strconv.Itoa(j.MaxRetry), metaFindTime: j.FindTime.String(),
		},
	}
	if time.Since(h.tried[j.Name]) < time.Second {
		return nil, fmt.Errorf("stream %s: tried less than a second ago", cfg.Name)
	}
	h.tried[j.Name] = time.Now()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := h.js.Stream(cctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = h.js.CreateStream(cctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = h.js.Stream(cctx, cfg.Name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	if got := s.CachedInfo().Config.Metadata; got[metaFarm] != f.cfg.Name {
		return nil, &clashError{name: cfg.Name, found: fmt.Sprintf("its %s is %q", metaFarm, got[metaFarm])}
	}
	h.streams[j.Name] = s
	return s, nil
}

// failSubject is the subject of failures of token (an address, or a wildcard) in jail.
func (f *Farm) failSubject(jail, token string) string {
	return "logban." + f.cfg.Name + ".fail." + jail + "." + token
}
