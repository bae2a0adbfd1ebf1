package telemetry

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzHandler sends arbitrary correlation IDs and traceparents: the echoed
// ID must always be valid and either the incoming one (when valid) or a
// fresh one, and nothing may panic.
func FuzzHandler(f *testing.F) {
	f.Add("app-7f3a-0001", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("x\r\nSet-Cookie: a=b", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz")
	f.Add("", "ff-00000000000000000000000000000000-0000000000000000-00")
	f.Add("é", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01")
	o, err := New(Config{Logger: nopLogger()})
	if err != nil {
		f.Fatal(err)
	}
	h := o.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, ok := IDFrom(r.Context()); !ok || id != w.Header().Get("X-Request-ID") {
			panic("context ID differs from echoed ID")
		}
		spanContextOf(r.Context())
	}))
	f.Fuzz(func(t *testing.T, id, traceparent string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header["X-Request-Id"] = []string{id}
		req.Header["Traceparent"] = []string{traceparent}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		got := rec.Header().Get("X-Request-ID")
		if !ValidID(got) {
			t.Fatalf("invalid echoed ID %q", got)
		}
		if ValidID(id) && got != id {
			t.Fatalf("valid ID %q replaced by %q", id, got)
		}
	})
}

// FuzzDeviceModel sends arbitrary device-model header values: the
// attribute value is always a bounded, clean string.
func FuzzDeviceModel(f *testing.F) {
	f.Add("Pixel 8 Pro")
	f.Add("<script>alert(1)</script>")
	f.Add("SM-G991B (Android 14)/x,y_z.-")
	f.Add(strings.Repeat("A", 200))
	f.Add("é\r\n")
	d := newDeviceSet(8)
	f.Fuzz(func(t *testing.T, s string) {
		got := d.value(s)
		if got == deviceUnknown || got == deviceOther {
			return
		}
		if got == "" || len(got) > 64 || deviceModel(got) != got || !strings.HasPrefix(s, got) {
			t.Fatalf("value(%q) = %q", s, got)
		}
		d.mu.RLock()
		n := len(d.seen)
		d.mu.RUnlock()
		if n > 8 {
			t.Fatalf("%d models kept", n)
		}
	})
}
