#!/bin/sh
# After the package went. A purge (deb only) removes what logban made: its database,
# log and socket folders; dpkg removes the configuration. A removal keeps them.
set -e

case "$1" in
    purge) rm -rf /var/lib/logban /var/log/logban /run/logban ;;
esac
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
