package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/logban/logban/internal/control"
)

// genlogs is the log generator, relative to this package's folder unless
// LOGBAN_GENLOGS names it.
func genlogs(b *testing.B) string {
	path := os.Getenv("LOGBAN_GENLOGS")
	if path == "" {
		path = "../../shared/tools/genlogs.py"
	}
	if _, err := os.Stat(path); err != nil {
		b.Skipf("no log generator at %s (set LOGBAN_GENLOGS): %v", path, err)
	}
	return path
}

// BenchmarkServerThroughput runs ban-server with the three Zimbra jails (zimbra-submission
// on zimbra.log; zimbra-mailbox-auth and zimbra-dosfilter on mailbox.log) and the log
// action, appends a generated 1M-line zimbra.log and its 500k-line mailbox.log to the
// files it follows as fast as they can be written, and measures until every line is read
// and the bans are exactly the addresses the generator's truth file says failed at
// least maxretry times. LOGBAN_BENCH_LINES changes the size.
func BenchmarkServerThroughput(b *testing.B) {
	const maxretry = 3
	lines := 1_000_000
	if s := os.Getenv("LOGBAN_BENCH_LINES"); s != "" {
		fmt.Sscan(s, &lines)
	}
	dir := b.TempDir()
	data := filepath.Join(dir, "data")
	// Stamped around now: the jails count only failures within findtime of the clock.
	start := time.Now().Add(-30 * time.Minute).Format("2006-01-02T15:04:05")
	if out, err := exec.Command("python3", genlogs(b), data, "--lines", fmt.Sprint(lines), "--start", start).CombinedOutput(); err != nil {
		b.Fatalf("genlogs: %v\n%s", err, out)
	}
	var truth map[string]map[string]int
	text, err := os.ReadFile(filepath.Join(data, "truth.json"))
	if err == nil {
		err = json.Unmarshal(text, &truth)
	}
	if err != nil {
		b.Fatal(err)
	}
	wantBans := 0
	for _, kind := range []string{"sasl", "mailbox_auth", "dos_alert"} {
		for _, n := range truth[kind] {
			if n >= maxretry {
				wantBans++
			}
		}
	}
	zimbra, _ := os.ReadFile(filepath.Join(data, "zimbra.log"))
	mailbox, _ := os.ReadFile(filepath.Join(data, "mailbox.log"))
	wantLines := int64(bytes.Count(zimbra, []byte("\n")) + bytes.Count(mailbox, []byte("\n")))

	bin := buildServer(b, dir)
	// fail2ban reads no logins: the row set beside it reads none either. The second
	// shows what trusting logins costs, on genlogs' worst case, where every login is a
	// new pair of account and address.
	for _, mode := range []struct{ name, trustTime string }{{"without-logins", "0"}, {"trusting-logins", `"30d"`}} {
		b.Run(mode.name, func(b *testing.B) {
			var took, written, cpu time.Duration
			runs := 0
			for b.Loop() {
				runs++
				run := b.TempDir()
				zlog, mlog, bans := filepath.Join(run, "zimbra.log"), filepath.Join(run, "mailbox.log"), filepath.Join(run, "bans.log")
				cfg := fmt.Sprintf(`
[server]
socket = "logban.sock"
database = "logban.db"
loglevel = "warn"
[actions.log]
type = "log"
path = %[1]q
[jails.zimbra-submission]
logpath = [%[2]q]
maxretry = %[4]d
findtime = "2h"
trust_time = %[5]s
actions = ["log"]
[jails.zimbra-mailbox-auth]
logpath = [%[3]q]
maxretry = %[4]d
findtime = "2h"
trust_time = %[5]s
actions = ["log"]
[jails.zimbra-dosfilter]
logpath = [%[3]q]
maxretry = %[4]d
findtime = "2h"
actions = ["log"]
`, bans, zlog, mlog, maxretry, mode.trustTime)
				conf := filepath.Join(run, "logban.toml")
				for path, text := range map[string]string{conf: cfg, zlog: "", mlog: ""} {
					writeFile(b, path, text)
				}
				cmd := exec.Command(bin, "-config", conf)
				cmd.Stderr = os.Stderr
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				c := control.NewClient(filepath.Join(run, "logban.sock"))
				waitFor(b, "ban-server to answer", func() bool { return c.Ping(context.Background()) == nil })

				used := cpuTime(b, cmd.Process.Pid)
				start := time.Now()
				errs := make(chan error, 2)
				for path, content := range map[string][]byte{zlog: zimbra, mlog: mailbox} {
					go func() { errs <- appendFast(path, content) }()
				}
				for range 2 {
					if err := <-errs; err != nil {
						b.Fatal(err)
					}
				}
				written += time.Since(start)
				// The log action's file has a line a ban, read as it grows, and a brief
				// status does not list the bans: both cheap to ask every millisecond, so the
				// waiting does not take the CPU the server it measures needs: reading the
				// whole file and a full status (4,200 bans listed) each time puts a tenth of
				// its CPU in answering, and slows it by a fifth (bench/README.md).
				banLines := &lineCount{path: bans}
				for {
					if banLines.count() >= wantBans && linesRead(b, c) == wantLines {
						break
					}
					if time.Since(start) > 2*time.Minute {
						b.Fatalf("after 2 minutes: %d lines of %d read, %d bans of %d", linesRead(b, c), wantLines, banLines.count(), wantBans)
					}
					time.Sleep(time.Millisecond)
				}
				took += time.Since(start)
				cpu += cpuTime(b, cmd.Process.Pid) - used
				banned := 0
				for _, jail := range []string{"zimbra-submission", "zimbra-mailbox-auth", "zimbra-dosfilter"} {
					st, err := c.JailStatusBrief(context.Background(), jail)
					if err != nil {
						b.Fatal(err)
					}
					banned += st.CurrentlyBanned
				}
				if banned != wantBans {
					b.Errorf("%d bans, the truth file says %d", banned, wantBans)
				}
				cmd.Process.Signal(os.Interrupt)
				cmd.Wait()
				banLines.close()
				// The run's logs go before the next run writes its own. Kept, they hold
				// 250 MB of page cache each, and the next run's writes take new memory,
				// which costs the writer here 6-10 times the CPU of memory freed and taken
				// again (bench/README.md): the writer, not the server, set the pace.
				os.RemoveAll(run)
			}
			b.ReportMetric(float64(wantLines*int64(runs))/took.Seconds(), "lines/s")
			b.ReportMetric(float64(wantBans), "bans")
			b.ReportMetric(written.Seconds()/float64(runs), "s-writing")
			b.ReportMetric(took.Seconds()/float64(runs), "s-to-done")
			// The server's CPU until done: steadier than its wall time on a shared machine,
			// where the writer and the server share the cores.
			b.ReportMetric(cpu.Seconds()/float64(runs), "server-cpu-s")

		})
	}
}

// lineCount counts the lines of a file as it grows, reading only what is new.
type lineCount struct {
	path string
	f    *os.File
	n    int
	buf  []byte
}

// count returns the lines in the file so far; 0 until it exists.
func (l *lineCount) count() int {
	if l.f == nil {
		f, err := os.Open(l.path)
		if err != nil {
			return 0
		}
		l.f, l.buf = f, make([]byte, 64<<10)
	}
	for {
		k, err := l.f.Read(l.buf)
		l.n += bytes.Count(l.buf[:k], []byte("\n"))
		if err != nil || k == 0 {
			return l.n
		}
	}
}

func (l *lineCount) close() {
	if l.f != nil {
		l.f.Close()
	}
}

// appendFast appends content to path in 64 KiB writes, as fast as they go.
func appendFast(path string, content []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	for rest := content; len(rest) > 0; {
		k := min(len(rest), 64<<10)
		if _, err := f.Write(rest[:k]); err != nil {
			f.Close()
			return err
		}
		rest = rest[k:]
	}
	return f.Close()
}

// linesRead asks the server how many lines its readers have read, each file once, in
// brief statuses: a jail's full status lists every ban.
func linesRead(b *testing.B, c *control.Client) int64 {
	seen := map[string]int64{}
	for _, jail := range []string{"zimbra-submission", "zimbra-dosfilter"} {
		st, err := c.JailStatusBrief(context.Background(), jail)
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range st.Files {
			seen[f.Path] = f.Lines
		}
	}
	var n int64
	for _, v := range seen {
		n += v
	}
	return n
}
