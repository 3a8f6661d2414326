// Package farm shares failures and bans between the hosts of a mail farm through a NATS
// JetStream cluster: the farm's own, or servers embedded in ban-server
// (internal/natsserver).
//
// What lives in NATS, for a farm called F:
//
//   - the bucket F_bans (KV, history 1, per-key TTL): one key per ban in force,
//     "<jail>.<addr>" with '.'→'-' and ':'→'_', its value a banValue, its TTL the ban's
//     time left. Every enforcing host watches it and applies what it holds; an expiry or
//     an unban arrives as a purge. The watch only applies, never writes, so nothing echoes.
//   - one stream per counting jail, F_fail_<jail>, on subjects logban.F.fail.<jail>.<addr>
//     (on disk): a failure is one empty message, kept findtime, at most maxretry−1 per
//     address; its maxretry and findtime are those every node announces once they agree
//     (settings.go). The
//     maxretry-th within findtime, on any host, is refused (error 10077), and that host
//     decides the ban. A ban is decided by one create of its key (a publish that expects
//     no earlier revision, as kv.Create is, sent asynchronously in a burst): exactly
//     one host's succeeds.
//     Where the ban ends before findtime does, the decider purges the address's
//     failures, as a ban resets the count on one host.
//   - the bucket F_nodes: each node's own single addresses (and, if it shares them, the
//     single addresses of its ignore list), 16 at most, and how it counts each counting
//     jail, under its own name, refreshed while it runs and forgotten when it expires; no
//     host bans an address in it.
//
// With the farm's node keys ([farm] nodes), every value a node writes (a ban, the body
// of an unban's purge, its node entry) is an envelope signed with its nkey (sign.go),
// checked by every reader: no host writes in another's name. The buckets and streams
// are bounded (setup.go), and Permissions is what a node may publish.
//
// The host stays its own source of truth: its database and its kernel. Decisions, manual
// bans and unbans go to an outbox in the database first, and leave it only once the farm
// is seen to hold a ban for them (a ban an unban in the outbox lifts is not published),
// or, a ban, once it has ended, the farm away or not: the outbox holds no more bans than
// are in force. Failures are not queued (they would be stale). A host back from a
// partition applies only what the farm holds: the watch keeps each key's last entry,
// holds each batch of bans until it has delivered the bucket's last entry (as the leader
// gives it), and applies no ban delivered after its lift. Nothing here blocks the log
// readers: a failure is handed over without waiting, or dropped and counted.
//
// Its files: farm.go (the membership, what the ban manager tells it, Run), setup.go (the
// bucket and streams, found or made, and their bounds), sign.go (values signed and
// checked), permissions.go (what a node may publish), publish.go (the outbox, published
// in order), count.go (failures counted across the farm, and forgotten after a ban),
// queue.go (the bounded queues of failures and purges), watch.go (the farm's bans
// applied here, and the nodes' entries), settings.go (counting settings the nodes agree
// on), health.go (the bucket's and streams' quorum, the routes), quota.go (the policy
// service's quotas across the farm), status.go, value.go (what the bucket and the
// outbox hold).
package farm
