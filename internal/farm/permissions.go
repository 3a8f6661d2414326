package farm

// Permissions returns what node may publish and subscribe to on the NATS servers of
// farm, whose counting jails and policy quotas are named: its failures and quota
// messages, the bans bucket (any ban, as any host may decide one; each signed, so the
// farm knows whose), its own node entry and no other's, the farm's own buckets and
// streams made (none deleted, and none changed but the counting streams' settings, as
// the hosts agree on them) and read and watched, and the failures of the counting
// streams, and the quotas' messages, removed. Nothing else: no host can
// delete the farm's data, purge its bans, or reach another account. A NATS wildcard
// stands for whole tokens only, so each stream is named.
func Permissions(farm, node string, jails, quotas []string) (publish, subscribe []string) {
	publish = []string{
		"logban." + farm + ".fail.>",
		"logban." + farm + ".quota.>",
		"$KV." + farm + "_bans.>",
		"$KV." + farm + "_nodes." + node,
		"$JS.API.INFO",
		"$JS.API.STREAM.INFO.*",
		"$JS.API.STREAM.CREATE.KV_" + farm + "_bans",
		"$JS.API.STREAM.CREATE.KV_" + farm + "_nodes",
		"$JS.API.STREAM.MSG.GET.>",
		"$JS.API.DIRECT.GET.>",
		"$JS.API.CONSUMER.CREATE.>",
		"$JS.API.CONSUMER.DELETE.>",
		"$JS.FC.>",
	}
	for _, j := range jails {
		name := farm + "_fail_" + j
		publish = append(publish, "$JS.API.STREAM.CREATE."+name, "$JS.API.STREAM.UPDATE."+name, "$JS.API.STREAM.PURGE."+name)
	}
	for _, q := range quotas {
		for _, kind := range []string{"msgs", "rcpts"} {
			name := farm + "_quota_" + q + "_" + kind
			publish = append(publish, "$JS.API.STREAM.CREATE."+name, "$JS.API.STREAM.MSG.DELETE."+name)
		}
	}
	return publish, []string{"_INBOX.>"}
}
