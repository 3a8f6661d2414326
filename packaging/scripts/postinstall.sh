#!/bin/sh
# After an install or an upgrade (deb: configure; rpm: 1 or 2). Makes the folders and
# tells systemd of the unit. It never starts or restarts ban-server and never touches
# the firewall: the bans in force stay as they are until the administrator acts.
set -e

install -d -m 0750 /var/lib/logban /var/log/logban
if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --create logban.conf >/dev/null 2>&1 || install -d -m 0750 /run/logban
else
    install -d -m 0750 /run/logban
fi

first=no
case "$1" in
    configure) [ -z "${2:-}" ] && first=yes ;;
    1) first=yes ;;
esac

if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    if [ "$first" = no ] && systemctl is-active --quiet logban.service; then
        echo "logban: the running ban-server is the old version; restart it when you choose: systemctl restart logban"
    fi
fi
if [ "$first" = yes ]; then
    echo "logban: edit /etc/logban/logban.toml (replace its placeholder addresses), check it with"
    echo "  ban-server -check -config /etc/logban/logban.toml"
    echo "then start it: systemctl enable --now logban"
fi
exit 0
