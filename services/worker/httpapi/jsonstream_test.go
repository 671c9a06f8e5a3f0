package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// Escaping output in pieces, cut anywhere (inside runes too), gives the
// string encoding/json gives for the whole: same bytes on the wire.
func TestJSONStringMatchesEncodingJSON(t *testing.T) {
	alphabet := [][]byte{
		[]byte("a"), []byte("\""), []byte("\\"), []byte("\n"), []byte("\x00"), []byte("\x1f"), []byte("<&>"),
		[]byte("é"), []byte("€"), []byte("𝄞"), []byte("\u2028"), []byte("\u2029"), {0xff}, {0xe2, 0x82}, {0xc3}, {0x80},
		[]byte("\b\f\r\t"), []byte{0xf0, 0x9d, 0x84},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		var data []byte
		for range rng.IntN(40) {
			data = append(data, alphabet[rng.IntN(len(alphabet))]...)
		}
		want, _ := json.Marshal(string(data))
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		j := &jsonString{w: w}
		for rest := data; len(rest) > 0; {
			k := 1 + rng.IntN(len(rest))
			j.Write(rest[:k])
			rest = rest[k:]
		}
		j.finish()
		w.Flush()
		if got := `"` + buf.String() + `"`; got != string(want) {
			t.Fatalf("escaping %q\n got %s\nwant %s", data, got, want)
		}
	}
}
