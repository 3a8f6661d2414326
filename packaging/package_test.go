// Package packaging holds the test of the .deb and .rpm packages packaging/build makes.
package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logban/logban/internal/testenv"
)

// installScript installs the .deb ($1) and purges it again, in namespaces of its own
// with $2 as its scratch folder, printing what it finds on lines the test looks for.
const installScript = `
set -euo pipefail
deb=$1 out=$2 upgrade=$3
# Everything the package and its scripts write lands in throwaway layers: this mount
# namespace lays one over /etc, /usr and /var, and a fresh /run; the network namespace
# keeps the firewall and routes of the test its own. The layers live in a tmpfs, which
# overlayfs takes as an upper layer wherever /tmp is.
mount -t tmpfs tmpfs "$out"
for d in etc usr var; do
    mkdir -p "$out/upper/$d" "$out/work/$d"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$out/upper/$d,workdir=$out/work/$d" "/$d"
done
mount -t tmpfs tmpfs /run
ip link set lo up

# What logban would find if it had run here before: a chain, a set and a route of its own.
iptables -N logban-old
ipset create logban-old-4 hash:ip
ip route add blackhole 203.0.113.9 proto 178
before=$(iptables-save | grep -v '^#'; ipset list -n; ip route show table all proto 178)

dpkg -i "$deb"
after=$(iptables-save | grep -v '^#'; ipset list -n; ip route show table all proto 178)
[ "$before" = "$after" ] && echo "install left the firewall as it was"

dpkg -L logban >"$out/files"
echo "files: $(wc -l <"$out/files")"
for f in /usr/bin/ban-server /usr/bin/ban-client /usr/lib/systemd/system/logban.service \
         /etc/logban/logban.toml /etc/logrotate.d/logban /usr/lib/tmpfiles.d/logban.conf \
         /usr/share/bash-completion/completions/ban-client /usr/share/zsh/vendor-completions/_ban-client \
         /usr/share/fish/vendor_completions.d/ban-client.fish /usr/share/doc/logban/copyright \
         /usr/share/doc/logban/changelog.gz; do
    [ -f "$f" ] && echo "landed $f"
done
grep -c '^github.com/nats-io/nats-server/v2@' /usr/share/doc/logban/copyright | sed 's/^/nats-server in the copyright: /'
grep -c 'Apache License' /usr/share/doc/logban/copyright | sed 's/^/Apache licenses: /' | sed 's/: [1-9][0-9]*$/: some/'
zcat /usr/share/doc/logban/changelog.gz | head -n 1
for d in /etc/logban/jail.d /var/lib/logban /var/log/logban /run/logban; do
    [ -d "$d" ] && echo "landed $d"
done
dpkg-query -W -f='conffiles:${Conffiles}\n' logban
ban-server -version
ban-client version 2>&1 || true
grep -h '^ExecStart=\|^LimitNOFILE=\|^CapabilityBoundingSet=' /usr/lib/systemd/system/logban.service
ban-server -check -config /etc/logban/logban.toml
for page in ban-server.8 ban-client.1 logban.toml.5 logban.7; do
    dir=/usr/share/man/man${page##*.}
    MANWIDTH=80 man -l "$dir/$page.gz" 2>&1 | head -n 4 | sed "s|^|man $page: |"
done
bash -c 'source /usr/share/bash-completion/completions/ban-client && complete -p ban-client'

# An upgrade keeps the administrator's configuration and leaves the firewall alone.
echo '# edited by the administrator' >>/etc/logban/logban.toml
dpkg -i "$upgrade"
after=$(iptables-save | grep -v '^#'; ipset list -n; ip route show table all proto 178)
[ "$before" = "$after" ] && echo "upgrade left the firewall as it was"
ban-server -version
grep -c '^# edited by the administrator' /etc/logban/logban.toml | sed 's/^/edits kept: /'

echo '# a drop-in of the administrator' >/etc/logban/jail.d/mine.toml
dpkg --purge logban
echo "purged"
# dpkg removes only what the package installed: a drop-in of the administrator's stays,
# and the folders holding it (as the README says).
[ -f /etc/logban/jail.d/mine.toml ] && echo "drop-in kept"
rm -f /etc/logban/jail.d/mine.toml && rmdir /etc/logban/jail.d /etc/logban
left=$( (cat "$out/files"; echo /var/lib/logban; echo /var/log/logban; echo /run/logban; echo /etc/logban) |
    while read -r f; do
        case $f in /. | /etc | /usr | /var | /usr/* | /var/lib | /var/log | /etc/logrotate.d) [ -d "$f" ] && continue ;; esac
        [ -e "$f" ] && echo "$f"
    done || true)
echo "left behind: [$left]"
echo "kernel after purge: [$(iptables-save | grep -c logban || true) rules, $(ipset list -n | grep -c logban || true) sets, $(ip route show table all proto 178 | wc -l) routes]"
`

// TestPackages builds the packages with packaging/build as the README says, installs
// the .deb with dpkg in throwaway layers over /etc, /usr and /var, checks what landed
// and that it works (the configuration passes -check, the man pages render, the bash
// completion loads), upgrades it to a newer version (the edited configuration stays,
// the firewall is not touched), then purges it: nothing is left, and the purge took
// logban's chains, sets and routes out of the kernel. The .rpm is checked with rpm -qpl and
// --scripts, and installed into a throwaway root.
func TestPackages(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tool := range []struct{ name, pkg string }{
		{"dpkg", "dpkg"}, {"man", "man-db"}, {"unshare", "util-linux"},
		{"iptables", "iptables"}, {"ipset", "ipset"}, {"ip", "iproute2"},
	} {
		testenv.RequireTool(t, tool.name, tool.pkg)
	}
	if exec.Command("dpkg-query", "-W", "logban").Run() == nil {
		testenv.Skip(t, "a logban package is installed on this machine; the test installs its own and would hide it")
	}
	out := t.TempDir()
	next := t.TempDir()
	for _, b := range []struct{ version, out string }{{"1.2.3", out}, {"1.2.4", next}} {
		build := exec.Command("./build", b.version)
		build.Env = append(os.Environ(), "OUT="+b.out)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("packaging/build %s: %v\n%s", b.version, err, out)
		}
	}
	deb, rpm, upgrade := globOne(t, out, "*.deb"), globOne(t, out, "*.rpm"), globOne(t, next, "*.deb")

	t.Run("deb", func(t *testing.T) {
		cmd := exec.Command("unshare", "--mount", "--net", "--propagation", "private", "bash", "-c", installScript, "bash", deb, t.TempDir(), upgrade)
		b, err := cmd.CombinedOutput()
		got := string(b)
		if err != nil {
			t.Fatalf("install and purge: %v\n%s", err, got)
		}
		for _, want := range []string{
			"install left the firewall as it was",
			"landed /usr/bin/ban-server", "landed /usr/bin/ban-client",
			"landed /usr/lib/systemd/system/logban.service", "landed /etc/logban/logban.toml",
			"landed /etc/logrotate.d/logban", "landed /usr/lib/tmpfiles.d/logban.conf",
			"landed /usr/share/bash-completion/completions/ban-client",
			"landed /usr/share/zsh/vendor-completions/_ban-client",
			"landed /usr/share/fish/vendor_completions.d/ban-client.fish",
			"landed /etc/logban/jail.d", "landed /var/lib/logban", "landed /var/log/logban", "landed /run/logban",
			" /etc/logban/logban.toml ", " /etc/logrotate.d/logban ", // conffiles, with their sums
			"ban-server 1.2.3", "ban-client 1.2.3",
			"ExecStart=/usr/bin/ban-server -config /etc/logban/logban.toml",
			"LimitNOFILE=65536", // the policy service's connections, the logs followed
			"CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_DAC_READ_SEARCH CAP_CHOWN", // sockets given their group
			"/etc/logban/logban.toml: OK, 4 jails",
			"man ban-server.8: BAN-SERVER(8)", "man ban-client.1: BAN-CLIENT(1)", "man logban.toml.5: LOGBAN.TOML(5)",
			"man logban.7: LOGBAN(7)",
			"landed /usr/share/doc/logban/copyright", "landed /usr/share/doc/logban/changelog.gz",
			"nats-server in the copyright: 1", "Apache licenses: some", "logban (1.2.3)",
			"complete -F _ban_client ban-client",
			"upgrade left the firewall as it was", "ban-server 1.2.4", "edits kept: 1",
			"purged", "drop-in kept",
			"left behind: []",
			"kernel after purge: [0 rules, 0 sets, 0 routes]",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("no %q in:\n%s", want, got)
			}
		}
		t.Logf("install, checks and purge:\n%s", got)
	})

	t.Run("rpm", func(t *testing.T) {
		testenv.RequireTool(t, "rpm", "rpm") // the .deb's test runs without it
		list, err := exec.Command("rpm", "-qpl", rpm).CombinedOutput()
		if err != nil {
			t.Fatalf("rpm -qpl: %v\n%s", err, list)
		}
		for _, want := range []string{"/usr/bin/ban-server", "/usr/bin/ban-client", "/etc/logban/logban.toml",
			"/usr/lib/systemd/system/logban.service", "/usr/share/man/man5/logban.toml.5.gz",
			"/usr/share/zsh/site-functions/_ban-client", "/var/lib/logban"} {
			if !strings.Contains(string(list), want+"\n") {
				t.Errorf("rpm -qpl lacks %s:\n%s", want, list)
			}
		}
		configs, _ := exec.Command("rpm", "-qpc", rpm).CombinedOutput()
		if !strings.Contains(string(configs), "/etc/logban/logban.toml") {
			t.Errorf("rpm -qpc: the configuration is not a config file:\n%s", configs)
		}
		scripts, _ := exec.Command("rpm", "-qp", "--scripts", rpm).CombinedOutput()
		for _, want := range []string{"postinstall scriptlet", "preuninstall scriptlet", "/usr/bin/ban-server -cleanup", "postuninstall scriptlet"} {
			if !strings.Contains(string(scripts), want) {
				t.Errorf("rpm -qp --scripts lacks %q:\n%s", want, scripts)
			}
		}
		// A throwaway root has no /bin/sh for the scriptlets: the files only.
		root := t.TempDir()
		if b, err := exec.Command("rpm", "-i", "--nodeps", "--noscripts", "--root", root, rpm).CombinedOutput(); err != nil {
			t.Fatalf("rpm -i --root: %v\n%s", err, b)
		}
		if b, err := exec.Command(filepath.Join(root, "usr/bin/ban-server"), "-check", "-config", filepath.Join(root, "etc/logban/logban.toml")).CombinedOutput(); err != nil {
			t.Errorf("ban-server from the rpm: -check: %v\n%s", err, b)
		}
		// rpm -e has no purge: the database stays, and an edited configuration is saved.
		os.WriteFile(filepath.Join(root, "var/lib/logban/logban.db"), []byte("bans"), 0o600)
		f, _ := os.OpenFile(filepath.Join(root, "etc/logban/logban.toml"), os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString("# edited\n")
		f.Close()
		if b, err := exec.Command("rpm", "-e", "--nodeps", "--noscripts", "--root", root, "logban").CombinedOutput(); err != nil {
			t.Fatalf("rpm -e --root: %v\n%s", err, b)
		}
		for _, kept := range []string{"var/lib/logban/logban.db", "etc/logban/logban.toml.rpmsave"} {
			if _, err := os.Stat(filepath.Join(root, kept)); err != nil {
				t.Errorf("rpm -e did not keep %s: %v", kept, err)
			}
		}
		if _, err := os.Stat(filepath.Join(root, "usr/bin/ban-server")); err == nil {
			t.Error("rpm -e left ban-server")
		}
	})
}

func globOne(t *testing.T, dir, pattern string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	if len(m) != 1 {
		t.Fatalf("%s in %s: %v", pattern, dir, m)
	}
	return m[0]
}

// Run as root on a clone another user owns, which git refuses, the build says the one
// line that lets it, and stops before building anything.
func TestBuildOnAnotherUsersClone(t *testing.T) {
	testenv.RequireRoot(t)
	git := testenv.RequireTool(t, "git", "git")
	clone := filepath.Join(t.TempDir(), "logban")
	if out, err := exec.Command(git, "clone", "-q", "..", clone).CombinedOutput(); err != nil {
		testenv.Skip(t, "cannot clone this repository: "+err.Error()+": "+string(out))
	}
	if out, err := exec.Command("chown", "-R", "nobody", clone).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	build := exec.Command(filepath.Join(clone, "packaging", "build"))
	build.Env = append(os.Environ(), "HOME="+t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "OUT="+t.TempDir()) // no safe.directory of this machine's
	out, err := build.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "git refuses this clone, which another user owns") ||
		!strings.Contains(string(out), "git config --global --add safe.directory "+clone) {
		t.Errorf("build on another user's clone: %v\n%s", err, out)
	}
}
