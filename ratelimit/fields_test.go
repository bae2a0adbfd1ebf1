package ratelimit

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/dunglas/httpsfv"
	"github.com/stretchr/testify/require"
)

// chainCase configures one limiter of a chain: its policy, limit and key
// header ("" keys by address), and QuietAllow.
type chainCase struct {
	name  string
	limit Limit
	quiet bool
}

// chainOf wraps next in limiters made from cs, the first outermost, and
// returns the chain and a counter of requests that reached next.
func chainOf(t *testing.T, cs []chainCase) (http.Handler, *int) {
	t.Helper()
	reached := new(int)
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*reached++
		w.WriteHeader(http.StatusNoContent)
	})
	for i := len(cs) - 1; i >= 0; i-- {
		l, _, _ := newLimiter(t, Config{Name: cs[i].name, Limit: cs[i].limit, Key: KeyByHeader("X-" + cs[i].name), QuietAllow: cs[i].quiet})
		h = l.Handler(h)
	}
	return h, reached
}

// send sends n requests from one client (the same value in every key
// header) and returns the last response.
func send(h http.Handler, n int) *httptest.ResponseRecorder {
	var rec *httptest.ResponseRecorder
	for range n {
		r := httptest.NewRequest("GET", "/v1/orders", nil)
		for _, k := range []string{"X-Ip", "X-Device", "X-User"} {
			r.Header.Set(k, "client-1")
		}
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, r)
	}
	return rec
}

func TestChainedLimitersAddTheirMembers(t *testing.T) {
	ip := chainCase{name: "ip", limit: Limit{Requests: 100, Per: time.Minute}}
	device := chainCase{name: "device", limit: Limit{Requests: 30, Per: time.Minute, Burst: 3}}
	user := chainCase{name: "user", limit: Limit{Requests: 10, Per: time.Minute, Burst: 2}}
	quiet := func(c chainCase) chainCase { c.quiet = true; return c }
	tests := []struct {
		name        string
		chain       []chainCase
		requests    int
		wantCode    int
		wantPolicy  string
		wantLimit   string
		wantRetry   string
		wantViolate []any
		wantReached int
	}{
		{
			name: "two_allowed", chain: []chainCase{ip, user}, requests: 1, wantCode: 204, wantReached: 1,
			wantPolicy: `"ip";q=100;w=60, "user";q=10;w=60`,
			wantLimit:  `"ip";r=99;t=1, "user";r=1;t=6`,
		},
		{
			name: "two_user_over_limit", chain: []chainCase{ip, user}, requests: 3, wantCode: 429, wantReached: 2,
			wantPolicy: `"ip";q=100;w=60, "user";q=10;w=60`,
			wantLimit:  `"ip";r=97;t=1, "user";r=0;t=6`,
			wantRetry:  "6", wantViolate: []any{"user"},
		},
		{
			name: "three_allowed", chain: []chainCase{ip, device, user}, requests: 2, wantCode: 204, wantReached: 2,
			wantPolicy: `"ip";q=100;w=60, "device";q=30;w=60, "user";q=10;w=60`,
			wantLimit:  `"ip";r=98;t=1, "device";r=1;t=2, "user";r=0;t=6`,
		},
		{
			name: "three_user_over_limit", chain: []chainCase{ip, device, user}, requests: 3, wantCode: 429, wantReached: 2,
			wantPolicy: `"ip";q=100;w=60, "device";q=30;w=60, "user";q=10;w=60`,
			wantLimit:  `"ip";r=97;t=1, "device";r=0;t=2, "user";r=0;t=6`,
			wantRetry:  "6", wantViolate: []any{"user"},
		},
		{
			name: "three_device_over_limit_user_never_reached", chain: []chainCase{ip, device, user}, requests: 4, wantCode: 429, wantReached: 2,
			wantPolicy: `"ip";q=100;w=60, "device";q=30;w=60`,
			wantLimit:  `"ip";r=96;t=1, "device";r=0;t=2`,
			wantRetry:  "2", wantViolate: []any{"device"},
		},
		{
			name: "quiet_outer_allowed", chain: []chainCase{quiet(ip), user}, requests: 1, wantCode: 204, wantReached: 1,
			wantPolicy: `"user";q=10;w=60`,
			wantLimit:  `"user";r=1;t=6`,
		},
		{
			name: "quiet_outer_user_over_limit", chain: []chainCase{quiet(ip), user}, requests: 3, wantCode: 429, wantReached: 2,
			wantPolicy: `"user";q=10;w=60`,
			wantLimit:  `"user";r=0;t=6`,
			wantRetry:  "6", wantViolate: []any{"user"},
		},
		{
			name: "quiet_inner_allowed", chain: []chainCase{ip, quiet(user)}, requests: 1, wantCode: 204, wantReached: 1,
			wantPolicy: `"ip";q=100;w=60`,
			wantLimit:  `"ip";r=99;t=1`,
		},
		{
			name: "quiet_inner_over_limit_still_named", chain: []chainCase{ip, device, quiet(user)}, requests: 3, wantCode: 429, wantReached: 2,
			wantPolicy: `"ip";q=100;w=60, "device";q=30;w=60, "user";q=10;w=60`,
			wantLimit:  `"ip";r=97;t=1, "device";r=0;t=2, "user";r=0;t=6`,
			wantRetry:  "6", wantViolate: []any{"user"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, reached := chainOf(t, tt.chain)
			rec := send(h, tt.requests)
			require.Equal(t, tt.wantCode, rec.Code)
			require.Equal(t, []string{tt.wantPolicy}, rec.Header().Values("RateLimit-Policy"))
			require.Equal(t, []string{tt.wantLimit}, rec.Header().Values("RateLimit"))
			require.Equal(t, tt.wantRetry, rec.Header().Get("Retry-After"))
			require.Equal(t, tt.wantReached, *reached, "a rejected request never reaches the handler")
			if tt.wantCode == 429 {
				var body map[string]any
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
				require.Equal(t, tt.wantViolate, body["violated-policies"])
			}
			requireParses(t, rec.Header())
		})
	}
}

func TestSamePolicyTwiceReplacesItsMember(t *testing.T) {
	l, _, _ := newLimiter(t, Config{Name: "user", Limit: Limit{Requests: 10, Per: time.Minute, Burst: 5}, Key: KeyByHeader("X-User")})
	up, _, _ := newLimiter(t, Config{Name: "ip", Limit: Limit{Requests: 100, Per: time.Minute}, Key: KeyByHeader("X-Ip")})
	// The user limiter wraps twice (a route mounted under a group that
	// has it too): one member per policy, the inner decision's.
	h := up.Handler(l.Handler(l.Handler(ok204)))
	rec := send(h, 1)
	require.Equal(t, 204, rec.Code)
	require.Equal(t, []string{`"ip";q=100;w=60, "user";q=10;w=60`}, rec.Header().Values("RateLimit-Policy"))
	require.Equal(t, []string{`"ip";r=99;t=1, "user";r=3;t=6`}, rec.Header().Values("RateLimit"), "two tokens taken, the member replaced in place")
}

func TestMembersOfOthersKept(t *testing.T) {
	tests := []struct {
		name      string
		give      []string
		wantLimit string
	}{
		{name: "gateway_string_member", give: []string{`"gw";r=5;t=30`}, wantLimit: `"gw";r=5;t=30, "user";r=9;t=6`},
		{name: "gateway_token_member_two_lines", give: []string{`gw;r=5`, `"edge";r=1;t=2;pk=:AAE=:`}, wantLimit: `gw;r=5, "edge";r=1;t=2;pk=:AAE=:, "user";r=9;t=6`},
		{name: "same_name_as_token_replaced_in_place", give: []string{`a;r=1, user;r=0;t=9, b;r=2`}, wantLimit: `a;r=1, "user";r=9;t=6, b;r=2`},
		{name: "same_name_twice_one_member_left", give: []string{`"user";r=0, a;r=1, "user";r=3`}, wantLimit: `"user";r=9;t=6, a;r=1`},
		{name: "non_canonical_member_reserialized", give: []string{`"gw";r=05;x=?1`}, wantLimit: `"gw";r=5;x, "user";r=9;t=6`},
		{name: "inner_list_member_kept", give: []string{`("a" "b");r=1`}, wantLimit: `("a" "b");r=1, "user";r=9;t=6`},
		{name: "invalid_field_replaced", give: []string{`"gw" ;r=5`}, wantLimit: `"user";r=9;t=6`},
		{name: "unterminated_string_replaced", give: []string{`"unterminated;r=1`}, wantLimit: `"user";r=9;t=6`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _, _ := newLimiter(t, Config{Name: "user", Limit: Limit{Requests: 10, Per: time.Minute}, Key: KeyByHeader("X-User")})
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Ratelimit"] = append([]string(nil), tt.give...) // an upstream gateway's member
				l.Handler(ok204).ServeHTTP(w, r)
			})
			rec := send(h, 1)
			require.Equal(t, []string{tt.wantLimit}, rec.Header().Values("RateLimit"))
			_, err := httpsfv.UnmarshalList(rec.Header().Values("RateLimit"))
			require.NoError(t, err)
		})
	}
}

// requireParses parses both fields of h with an independent Structured
// Field parser and checks every member: a String name, the draft's
// parameters as non-negative Integers, w positive.
func requireParses(t *testing.T, h http.Header) {
	t.Helper()
	for field, params := range map[string][]string{"RateLimit-Policy": {"q", "w"}, "RateLimit": {"r", "t"}} {
		if len(h.Values(field)) == 0 {
			continue
		}
		list, err := httpsfv.UnmarshalList(h.Values(field))
		require.NoError(t, err, field)
		seen := map[string]bool{}
		for _, m := range list {
			it, ok := m.(httpsfv.Item)
			require.True(t, ok, "%s: a member is an Item", field)
			name, ok := it.Value.(string)
			require.True(t, ok, "%s: the policy name is a String", field)
			require.False(t, seen[name], "%s: one member per policy", field)
			seen[name] = true
			for _, p := range params {
				v, ok := it.Params.Get(p)
				require.True(t, ok, "%s %q has %s", field, name, p)
				n, ok := v.(int64)
				require.True(t, ok, "%s %q: %s is an Integer", field, name, p)
				require.GreaterOrEqual(t, n, int64(0))
				if p == "w" {
					require.Positive(t, n)
				}
			}
		}
	}
}

func TestPolicyNamesParseBack(t *testing.T) {
	for _, name := range []string{"api", `per "user" \ tier`, "a,b;c=d", " spaced "} {
		t.Run(name, func(t *testing.T) {
			l, _, _ := newLimiter(t, Config{Name: name, Limit: Limit{Requests: 1, Per: time.Minute}, Key: KeyByHeader("X-User")})
			h := l.Handler(ok204)
			for _, want := range []int{204, 429} {
				rec := send(h, 1)
				require.Equal(t, want, rec.Code)
				requireParses(t, rec.Header())
				for _, field := range []string{"RateLimit-Policy", "RateLimit"} {
					list, err := httpsfv.UnmarshalList(rec.Header().Values(field))
					require.NoError(t, err)
					require.Len(t, list, 1)
					require.Equal(t, name, list[0].(httpsfv.Item).Value, "%s names the policy exactly", field)
				}
			}
		})
	}
}

func TestPolicyNameThatIsNoSFStringRefused(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "non_ascii_name", cfg: Config{Name: "pölicy"}, want: `ratelimit: Config.Name "pölicy" cannot name a policy`},
		{name: "control_char_in_rule", cfg: Config{Rules: []Rule{{Name: "a\nb", Key: KeyByIP(), Limit: Limit{Requests: 1, Per: time.Second}}}}, want: `ratelimit: Config.Rules[0].Name "a\nb" cannot name a policy`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Key, cfg.Limit = KeyByIP(), Limit{Requests: 1, Per: time.Second}
			_, err := New(cfg)
			require.ErrorContains(t, err, tt.want)
		})
	}
	_, err := NewFailureBudget(FailureConfig{Name: "ßudget", Key: KeyByIP(), Budget: 1, Per: time.Second})
	require.ErrorContains(t, err, `ratelimit: FailureConfig.Name "ßudget" cannot name a policy`)
}

func TestFailureBudgetLockoutAddsItsMember(t *testing.T) {
	ip, _, _ := newLimiter(t, Config{Name: "ip", Limit: Limit{Requests: 100, Per: time.Minute}, Key: KeyByHeader("X-Ip")})
	b, err := NewFailureBudget(FailureConfig{Name: "login", Key: KeyByHeader("X-User"), Budget: 1, Per: time.Minute, Now: func() time.Time { return t0 }})
	require.NoError(t, err)
	wrong := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	h := ip.Handler(b.Handler(wrong))
	require.Equal(t, 401, send(h, 1).Code)
	rec := send(h, 1)
	require.Equal(t, 429, rec.Code, "locked out after one failure")
	require.Equal(t, []string{`"ip";q=100;w=60, "login";q=1;w=60`}, rec.Header().Values("RateLimit-Policy"))
	require.Equal(t, []string{`"ip";r=98;t=1, "login";r=0;t=60`}, rec.Header().Values("RateLimit"))
	require.Equal(t, "60", rec.Header().Get("Retry-After"))
	requireParses(t, rec.Header())
}

// FuzzAddMember holds addMember, with its unparsed path for fields the
// limiters of a chain wrote, equal to addMemberParsed on every field.
func FuzzAddMember(f *testing.F) {
	for _, s := range []string{
		`"ip";r=97;t=1`, `"ip";q=300;w=60, "user";q=100;w=60`, `"user";r=0;t=6`, `"a";r=007;t=1`,
		`"a";r=1;r=2`, `"a" ;r=1`, `"a";r=1,"b";r=2`, `ip;r=1`, `"a\"b";r=1`, `"a";r=1, `, `"a";R=1`,
		`"a";r=-1`, `"a";r=1.5`, `("a" "b");r=1`, `"a";r=1;t=2;u=3;v=4;w=5`, "", `"`,
	} {
		f.Add(s, "user")
		f.Add(s, "ip")
	}
	f.Fuzz(func(t *testing.T, old, name string) {
		quoted, err := quoteName("", name)
		if err != nil {
			return
		}
		val := []string{rateLimitField(quoted, 3, 1)}
		fast, plain := http.Header{fieldLimit: {old}}, http.Header{fieldLimit: {old}}
		addMember(fast, fieldLimit, name, val)
		addMemberParsed(plain, fieldLimit, name, val)
		if !slices.Equal(fast[fieldLimit], plain[fieldLimit]) {
			t.Fatalf("field %q, policy %q: addMember %q, addMemberParsed %q", old, name, fast[fieldLimit], plain[fieldLimit])
		}
	})
}

// BenchmarkAddMember: the second limiter of a chain adding its member to
// the first one's, unparsed (addMember) and parsed (addMemberParsed).
func BenchmarkAddMember(b *testing.B) {
	first, second := []string{`"ip";r=297;t=1`}, []string{`"user";r=97;t=1`}
	for _, bc := range []struct {
		name string
		add  func(http.Header, string, string, []string)
	}{{"addMember", addMember}, {"addMemberParsed", addMemberParsed}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h := http.Header{fieldLimit: first}
				bc.add(h, fieldLimit, "user", second)
			}
		})
	}
}
