package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/logban/logban/internal/farmkeys"
)

const farmKeysUsage = `ban-client farm init DIR [--farm NAME] [NODE[=HOST,...]]...
ban-client farm add-node DIR NODE [HOST]...
  Make a farm's keys, offline, in DIR (kept by the administrator, mode 0700): init makes
  the farm's authority (ca.pem, ca.key) and the nodes named; add-node adds one later.
  Each node gets a TLS certificate the authority signed, for its name, localhost and
  each HOST the others reach it by (NODE.pem, NODE.key), and an nkey it signs in and
  signs its bans with (NODE.nk); nodes.toml lists every node's public key. Copy to a
  node ca.pem, NODE.pem, NODE.key, NODE.nk and nodes.toml (never ca.key), and name them
  in its [farm]: tls_ca, tls_cert, tls_key, nkey_seed, nodes_file. After add-node, copy
  the new nodes.toml to every node and reload.
  ban-client farm init /root/logban-farm mta1=mta1.example.com mta2=mta2.example.com mbox1
  ban-client farm add-node /root/logban-farm proxy1 proxy1.example.com 192.0.2.10`

// farmKeys runs farm init and farm add-node: no server is asked.
func farmKeys(args []string, stdout io.Writer) (int, error) {
	if len(args) < 2 {
		return exitUsage, usageError{farmKeysUsage}
	}
	cmd, dir, rest := args[0], args[1], args[2:]
	switch cmd {
	case "init":
		farm := "farm"
		var nodes []string
		for i := 0; i < len(rest); i++ {
			if (rest[i] == "--farm" || rest[i] == "-farm") && i+1 < len(rest) {
				farm = rest[i+1]
				i++
				continue
			}
			nodes = append(nodes, rest[i])
		}
		if err := farmkeys.Init(dir, farm); err != nil {
			return exitRefused, fmt.Errorf("farm init: %w", err)
		}
		fmt.Fprintf(stdout, "%s: the farm's authority (%s; keep %s here, and nowhere else)\n", dir, farmkeys.CACert, farmkeys.CAKey)
		for _, n := range nodes {
			name, hosts, _ := strings.Cut(n, "=")
			var hs []string
			if hosts != "" {
				hs = strings.Split(hosts, ",")
			}
			if err := addNode(stdout, dir, name, hs); err != nil {
				return exitRefused, err
			}
		}
		return 0, nil
	case "add-node":
		if len(rest) < 1 {
			return exitUsage, usageError{"farm add-node takes DIR, a node's name, and the names or addresses the others reach it by\n" + farmKeysUsage}
		}
		if err := addNode(stdout, dir, rest[0], rest[1:]); err != nil {
			return exitRefused, err
		}
		return 0, nil
	}
	return exitUsage, errors.New("unknown farm command " + cmd)
}

func addNode(w io.Writer, dir, node string, hosts []string) error {
	nf, err := farmkeys.AddNode(dir, node, hosts)
	if err != nil {
		return fmt.Errorf("farm add-node %s: %w", node, err)
	}
	fmt.Fprintf(w, "%s: %s %s %s, key %s\n", node, filepath.Base(nf.Cert), filepath.Base(nf.Key), filepath.Base(nf.Seed), nf.PublicKey)
	return nil
}
