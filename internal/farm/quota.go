package farm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotJoined reports a farm call made before this host has joined its farm.
var ErrNotJoined = errors.New("not joined to the farm yet")

// CountMessage counts one message of holder against the policy quota named quota
// across the farm, as failures are counted: a stream per quota, F_quota_<quota>, keeps
// one message per message sent, for window, at most limit per holder; the message
// past the limit is refused by the stream, and over is true. holder is kept hashed.
// ctx bounds the call; an error means the farm could not count it.
func (f *Farm) CountMessage(ctx context.Context, quota string, limit int, window time.Duration, holder string) (over bool, err error) {
	h := f.joined.Load()
	if h == nil {
		return false, ErrNotJoined
	}
	if _, err := f.quotaStream(ctx, h, quota, limit, window); err != nil {
		return false, err
	}
	sum := sha256.Sum256([]byte(holder))
	msg := nats.NewMsg("logban." + f.cfg.Name + ".quota." + quota + "." + hex.EncodeToString(sum[:16]))
	msg.Data = []byte(f.cfg.Node)
	_, err = h.js.PublishMsg(ctx, msg)
	if isPerSubjectLimit(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("counting a message of quota %s across the farm: %w", quota, err)
	}
	return false, nil
}

// quotaStream returns the stream of a policy quota, making it if needed.
func (f *Farm) quotaStream(ctx context.Context, h *handles, quota string, limit int, window time.Duration) (jetstream.Stream, error) {
	key := "quota:" + quota
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.streams[key]; ok {
		return s, nil
	}
	cfg := jetstream.StreamConfig{
		Name:                 f.cfg.Name + "_quota_" + quota,
		Description:          "logban farm " + f.cfg.Name + ": messages of policy quota " + quota,
		Subjects:             []string{"logban." + f.cfg.Name + ".quota." + quota + ".*"},
		Storage:              jetstream.MemoryStorage,
		Replicas:             f.cfg.Replicas,
		MaxAge:               window,
		MaxMsgsPerSubject:    int64(limit),
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		Metadata:             map[string]string{metaFarm: f.cfg.Name, "logban.quota.messages": strconv.Itoa(limit), "logban.quota.window": window.String()},
	}
	s, err := h.js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	if got := s.CachedInfo().Config.Metadata[metaFarm]; got != f.cfg.Name {
		return nil, &clashError{name: cfg.Name, found: fmt.Sprintf("its %s is %q", metaFarm, got)}
	}
	h.streams[key] = s
	return s, nil
}
