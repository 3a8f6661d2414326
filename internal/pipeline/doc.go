// Package pipeline carries log lines to bans. A line's trip, top to bottom:
//
//  1. A Reader follows one log file (watcher.Follower), which hands it the file's new
//     lines in batches: every complete line written since the last, cut at
//     max_line_bytes, as they are in the file.
//  2. feed runs the batch through each jail that watches the file. The batch's bytes are
//     searched once for the literal every match of the jail's filter holds
//     (watcher.Batch.Search); only the lines it finds are judged, so a line no filter
//     wants costs a few bytes compared and no allocation.
//  3. The jail judges a candidate line (jails.Jail.Line): its filter reads the time and
//     the address from what the server wrote, the jail counts the failure within
//     findtime, and once maxretry is reached returns a ticket: "ban this address".
//  4. The batch's tickets go to the BanQueue, and the reader reads on.
//  5. The BanQueue's one goroutine hands what is queued, merged, to
//     jails.Manager.BanAll: it decides each ban (its length, from the address's
//     history) and hands each to the jail's actions; the manager records them behind,
//     in batches (jails.Manager.SetRecordBehind).
//  6. Each action has its own queue and worker (jails/actionqueue.go), which makes the
//     calls (a null route, an ipset entry, a webhook) in order, retrying those that
//     fail: a slow action holds up only itself.
//
// A file's position is saved only once the bans found before it are recorded (Flush,
// then jails.Manager.WaitRecorded), so a crash loses no ban and reads no line twice into
// a second ban.
package pipeline
