#!/bin/sh
# Before the package goes (deb: remove, which also comes before a purge; rpm: 0), not on
# an upgrade: stop ban-server and take logban's chains, sets and routes out of the
# kernel while ban-server is still here to do it. The bans stay in the database.
set -e

case "$1" in
    remove|0) ;;
    *) exit 0 ;;
esac
if [ -d /run/systemd/system ]; then
    systemctl disable --now logban.service >/dev/null 2>&1 || true
fi
/usr/bin/ban-server -cleanup || echo "logban: ban-server -cleanup failed; run it by hand if logban's rules remain" >&2
exit 0
