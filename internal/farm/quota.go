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

// Quota is a policy quota as the farm counts it: messages, and recipients across them,
// per holder within the window; 0 is no limit.
type Quota struct {
	Name                 string
	Messages, Recipients int
	Window               time.Duration
}

// CountMessage counts one message of holder, to rcpts recipients, against quota across
// the farm, as failures are counted: a stream per quota and limit, F_quota_NAME_msgs and
// F_quota_NAME_rcpts, keeps one message per message (and per recipient) sent, for the
// window, at most the limit per holder; the one past the limit is refused by the
// stream, and over is true. What a message over a limit had stored already is deleted
// again: a message not sent is not counted. holder is kept hashed. ctx bounds the call;
// an error means the farm could not count it.
func (f *Farm) CountMessage(ctx context.Context, q Quota, holder string, rcpts int) (over bool, err error) {
	h := f.joined.Load()
	if h == nil {
		return false, ErrNotJoined
	}
	sum := sha256.Sum256([]byte(holder))
	token := hex.EncodeToString(sum[:16])
	type stored struct {
		stream string
		seq    uint64
	}
	var kept []stored
	undo := func() { // even when ctx ran out: what stays is counted for the whole window
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		for _, s := range kept {
			if st, err := f.quotaStream(dctx, h, q, s.stream == "rcpts"); err == nil {
				st.DeleteMsg(dctx, s.seq) //nolint:errcheck // the window ages it out anyway
			}
		}
	}
	for _, part := range []struct {
		kind  string
		limit int
		n     int
	}{{"msgs", q.Messages, 1}, {"rcpts", q.Recipients, max(rcpts, 1)}} {
		if part.limit == 0 {
			continue
		}
		if _, err := f.quotaStream(ctx, h, q, part.kind == "rcpts"); err != nil {
			undo()
			return false, err
		}
		subject := "logban." + f.cfg.Name + ".quota." + q.Name + "." + part.kind + "." + token
		futs := make([]jetstream.PubAckFuture, 0, part.n)
		for range part.n {
			msg := nats.NewMsg(subject)
			msg.Data = []byte(f.cfg.Node)
			fut, err := h.js.PublishMsgAsync(msg)
			if err != nil {
				undo()
				return false, fmt.Errorf("counting a message of quota %s across the farm: %w", q.Name, err)
			}
			futs = append(futs, fut)
		}
		var refused, failed error
		for _, fut := range futs {
			select {
			case ack := <-fut.Ok():
				kept = append(kept, stored{part.kind, ack.Sequence})
			case err := <-fut.Err():
				if isPerSubjectLimit(err) {
					refused = err
				} else {
					failed = err
				}
			case <-ctx.Done():
				failed = ctx.Err()
			}
		}
		switch {
		case failed != nil:
			undo()
			return false, fmt.Errorf("counting a message of quota %s across the farm: %w", q.Name, failed)
		case refused != nil:
			undo()
			return true, nil
		}
	}
	return false, nil
}

// quotaStream returns the stream of a policy quota's messages, or of its recipients,
// making it if needed.
func (f *Farm) quotaStream(ctx context.Context, h *handles, q Quota, recipients bool) (jetstream.Stream, error) {
	kind, limit := "msgs", q.Messages
	if recipients {
		kind, limit = "rcpts", q.Recipients
	}
	key := "quota:" + q.Name + ":" + kind
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.streams[key]; ok {
		return s, nil
	}
	cfg := jetstream.StreamConfig{
		Name:                 f.cfg.Name + "_quota_" + q.Name + "_" + kind,
		Description:          "logban farm " + f.cfg.Name + ": the " + kind + " of policy quota " + q.Name,
		Subjects:             []string{"logban." + f.cfg.Name + ".quota." + q.Name + "." + kind + ".*"},
		Storage:              jetstream.MemoryStorage,
		Replicas:             f.cfg.Replicas,
		MaxAge:               q.Window,
		MaxMsgsPerSubject:    int64(limit),
		MaxMsgs:              maxCountMsgs,
		MaxBytes:             maxCountBytes,
		MaxMsgSize:           maxCountMsg,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		Metadata:             map[string]string{metaFarm: f.cfg.Name, "logban.quota.limit": strconv.Itoa(limit), "logban.quota.window": q.Window.String()},
	}
	s, err := h.js.Stream(ctx, cfg.Name) // made before: a host may make, not change, the farm's streams
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = h.js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = h.js.Stream(ctx, cfg.Name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	if got := s.CachedInfo().Config.Metadata[metaFarm]; got != f.cfg.Name {
		return nil, &clashError{name: cfg.Name, found: fmt.Sprintf("its %s is %q", metaFarm, got)}
	}
	h.streams[key] = s
	return s, nil
}

// SetQuotas tells the farm the policy quotas it counts, so that their streams are made
// when this host joins, before the first message: making one takes longer than a
// policy decision may.
func (f *Farm) SetQuotas(qs []Quota) {
	f.mu.Lock()
	f.quotas = append([]Quota(nil), qs...)
	f.mu.Unlock()
	if h := f.joined.Load(); h != nil {
		go f.makeQuotaStreams(context.Background(), h)
	}
}

// makeQuotaStreams makes the streams of the quotas known now; one it cannot make is
// made at its first message.
func (f *Farm) makeQuotaStreams(ctx context.Context, h *handles) {
	f.mu.Lock()
	qs := f.quotas
	f.mu.Unlock()
	for _, q := range qs {
		for _, recipients := range []bool{false, true} {
			if recipients && q.Recipients == 0 || !recipients && q.Messages == 0 {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if _, err := f.quotaStream(cctx, h, q, recipients); err != nil {
				f.failf("making the stream of policy quota "+q.Name+"; made at its first message", err)
			}
			cancel()
		}
	}
}
