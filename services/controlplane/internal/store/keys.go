package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"math/big"
)

// KeyPrefix starts every generated API key.
const KeyPrefix = "osb_"

const keyAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// NewKey returns a fresh API key: osb_ and 40 random base62 characters
// (about 238 bits).
func NewKey() string {
	b := make([]byte, 40)
	n := big.NewInt(int64(len(keyAlphabet)))
	for i := range b {
		v, err := rand.Int(rand.Reader, n)
		if err != nil {
			panic(err) // crypto/rand does not fail on Linux
		}
		b[i] = keyAlphabet[v.Int64()]
	}
	return KeyPrefix + string(b)
}

// HashKey is what the store keeps of a key: its SHA-256, hex-encoded.
func HashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// VisiblePrefix is the part of a key shown to people to tell keys apart.
func VisiblePrefix(key string) string {
	n := min(12, len(key)/2) // a short (hand-made) key keeps most of itself hidden
	return key[:n]
}
