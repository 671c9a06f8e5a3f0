package errs

import (
	"net/http"
	"testing"
)

// Every kind maps to its own status, and a status from another service maps
// back to that kind: the round trip is the one mapping place.
func TestStatusRoundTrip(t *testing.T) {
	seen := map[int]Kind{}
	for k := KindInternal; k < kindEnd; k++ {
		st := k.HTTPStatus()
		if other, dup := seen[st]; dup {
			t.Fatalf("kinds %d and %d both map to %d", other, k, st)
		}
		seen[st] = k
		if got := FromHTTP(st, "", "").Kind; got != k {
			t.Errorf("status %d maps back to kind %d, want %d", st, got, k)
		}
	}
	for _, tc := range []struct {
		status int
		kind   Kind
	}{
		{http.StatusRequestedRangeNotSatisfiable, KindRange},
		{http.StatusInsufficientStorage, KindNoSpace},
		{http.StatusTeapot, KindInternal},
	} {
		e := FromHTTP(tc.status, "", "")
		if e.Kind != tc.kind {
			t.Errorf("status %d: kind %d, want %d", tc.status, e.Kind, tc.kind)
		}
		if tc.kind != KindInternal && e.Kind.HTTPStatus() != tc.status {
			t.Errorf("status %d is answered as %d", tc.status, e.Kind.HTTPStatus())
		}
	}
}
