package digest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// A nonce is base64url(ts | rnd | mac): ts the issue time in Unix seconds
// (8 bytes), rnd 8 random bytes, mac the first 16 bytes of
// HMAC-SHA256(key, label | ts | rnd | realm). Nothing is stored when a
// nonce is issued, so challenging a flood costs no memory; the MAC proves
// the nonce is ours and was issued for this realm, ts says how old it is.
const (
	nonceTSLen  = 8
	nonceRndLen = 8
	nonceMACLen = 16
	nonceRawLen = nonceTSLen + nonceRndLen + nonceMACLen
	// nonceSkew tolerates a nonce a little in the future (a clock step
	// between issuing and checking); more than that is not ours.
	nonceSkew = 5 * time.Second
)

// nonceLabel separates these MACs from anything else the key might sign.
var nonceLabel = []byte("regbridge digest nonce v1\x00")

// nonceID identifies a nonce in the replay table: its MAC, unique per
// nonce without holding the whole string.
type nonceID [nonceMACLen]byte

// nonces issues and verifies stateless nonces with one key.
type nonces struct {
	key []byte
}

func newNonces(key []byte) (*nonces, error) {
	if len(key) == 0 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
	}
	return &nonces{key: key}, nil
}

// issue returns a fresh nonce for realm at now.
func (n *nonces) issue(realm string, now time.Time) string {
	var raw [nonceRawLen]byte
	binary.BigEndian.PutUint64(raw[:nonceTSLen], uint64(now.Unix()))
	_, _ = rand.Read(raw[nonceTSLen : nonceTSLen+nonceRndLen]) // never fails (crypto/rand)
	copy(raw[nonceTSLen+nonceRndLen:], n.mac(raw[:nonceTSLen+nonceRndLen], realm))
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// verify checks that s is a nonce this key issued for realm and returns
// its issue time and id. It does not judge the age: the caller does, after
// checking the answer, because stale=true is only for correct answers.
func (n *nonces) verify(s, realm string, now time.Time) (issued time.Time, id nonceID, ok bool) {
	if len(s) != base64.RawURLEncoding.EncodedLen(nonceRawLen) {
		return time.Time{}, id, false
	}
	var raw [nonceRawLen]byte
	if m, err := base64.RawURLEncoding.Decode(raw[:], []byte(s)); err != nil || m != nonceRawLen {
		return time.Time{}, id, false
	}
	want := n.mac(raw[:nonceTSLen+nonceRndLen], realm)
	if !hmac.Equal(want, raw[nonceTSLen+nonceRndLen:]) {
		return time.Time{}, id, false
	}
	ts := int64(binary.BigEndian.Uint64(raw[:nonceTSLen]))
	issued = time.Unix(ts, 0)
	if issued.After(now.Add(nonceSkew)) {
		return time.Time{}, id, false
	}
	copy(id[:], raw[nonceTSLen+nonceRndLen:])
	return issued, id, true
}

func (n *nonces) mac(tsRnd []byte, realm string) []byte {
	m := hmac.New(sha256.New, n.key)
	m.Write(nonceLabel)
	m.Write(tsRnd)
	m.Write([]byte(realm))
	return m.Sum(nil)[:nonceMACLen]
}
