package farm

// The bounds, for the tests of package farm_test.
const (
	MaxBanValue   = maxBanValue
	MaxBansBytes  = maxBansBytes
	MaxNodeValue  = maxNodeValue
	MaxNodesBytes = maxNodesBytes
	MaxCountMsgs  = maxCountMsgs
	MaxCountBytes = maxCountBytes
	MaxCountMsg   = maxCountMsg
)
