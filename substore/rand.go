package substore

import (
	"crypto/rand"
	"encoding/hex"
)

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
