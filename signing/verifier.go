package signing

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/apiguard/apiguard/internal/events"
	"github.com/apiguard/apiguard/internal/sfv"
	"github.com/apiguard/apiguard/internal/shadowbody"
)

// Config configures a [Verifier]. A zero field takes the default in its
// comment.
type Config struct {
	// Keys finds each device's key by keyid. Required.
	Keys KeyStore
	// ReplayStore keeps nonces and per-key high-water marks. Default: a
	// [MemoryReplayStore] of ReplayCacheSize entries; use redisstore when
	// several instances serve one API.
	ReplayStore ReplayStore
	// ReplayCacheSize sizes the default ReplayStore. Default: 100000.
	ReplayCacheSize int
	// Profile is what a signature must cover and carry, for endpoints
	// wrapped with [Verifier.Handler]. Default: the mobile profile (see
	// [Profile]).
	Profile Profile
	// Window is how old a signature may be: created less than Window
	// behind now. It bounds how long a nonce is held, and covers transit,
	// retries and client clocks that run behind. Default: 5 minutes.
	Window time.Duration
	// FutureSkew is how far ahead of now created may be: a client clock
	// that runs ahead. It is kept small and apart from Window, because a
	// signature dated ahead stays usable (and its nonce held) that much
	// longer. Default: 30 seconds, or Window when that is shorter; at most
	// Window.
	//
	// Phones set their clocks from the network (NTP, or the carrier's
	// NITZ) and drift a few seconds a day between syncs: devices with
	// automatic time are within a few seconds of true time, and 30
	// seconds leaves them a wide margin (it is also the leeway auth
	// gives JWT iat and nbf). A device whose clock was set by hand can be
	// off by any amount either way; no bound fits it, and the 401 it gets
	// carries the server's Date, from which a client can correct its
	// clock and sign again at once.
	FutureSkew time.Duration
	// ReorderSlack is how much older than the newest accepted signature of
	// the same key a signature may be, so that parallel requests pass while
	// a capture replayed after newer traffic does not. Default: 5s.
	ReorderSlack time.Duration
	// MaxBodyBytes caps the body read to check Content-Digest; a larger
	// body is answered 413. Default: 1 MiB; at most 1 GiB.
	MaxBodyBytes int64
	// Scheme is the scheme clients sign in @target-uri and @scheme (a
	// proxy in front may have terminated TLS). Default: "https".
	Scheme string
	// Authority is the authority clients sign in @target-uri and
	// @authority. Default: the request's Host, lower-cased and without the
	// scheme's default port (RFC 9421 §2.2.3).
	Authority string
	// DeviceModelHeader names a request header whose value (sanitised,
	// truncated) is logged with signature mismatches, so that emulator
	// farms show up as clusters. Default: X-Device-Model.
	DeviceModelHeader string
	// Shadow decides every request exactly as enforce mode does, with the
	// same side effects (nonces recorded as used, replay floors and
	// high-water marks raised), logs each refusal as its usual event
	// (signature_mismatch, replay, replay_floor, signature_rejected) with
	// shadow=true, which telemetry counts with the attribute
	// shadow="true" (the would-deny count), and then calls the next
	// handler instead of refusing. A refused request carries no [Result]
	// ([ResultFrom] and [KeyIDFrom] report false) and its whole body,
	// what the check read and the rest (kept in memory up to
	// MaxBodyBytes). Outages (ErrStoreUnavailable, 503 in enforce mode)
	// pass too, counted the same way: a control on trial must not make
	// the API less available than it was without it. Default: false.
	Shadow bool
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Logger receives events (signature_mismatch, replay, replay_floor,
	// signature_rejected). Default: slog.Default().
	Logger *slog.Logger
	// ErrorHandler writes rejections. Default: [Verifier.WriteError].
	ErrorHandler func(http.ResponseWriter, *http.Request, error)
}

// Profile is what a signature must cover and carry. The zero Profile is
// the default mobile profile: covered components include @method and
// @target-uri (or @authority, @path and @query), content-digest whenever
// the request has a body, and authorization whenever that header is
// present; the parameters created, keyid and nonce are required. Each
// loosening is a field named Insecure.
type Profile struct {
	// Tag, when set, is required as the signature's tag parameter, and
	// picks the signature among several. Default: none.
	Tag string
	// Components are further required component identifiers, such as
	// "x-device-id" or `"@query-param";name="id"` (quotes optional for a
	// plain name).
	Components []string
	// InsecureAllowMissingNonce accepts signatures without a nonce:
	// replays inside the window are then caught only by the per-key
	// high-water mark.
	InsecureAllowMissingNonce bool
	// InsecureAllowUnsignedBody accepts a body that content-digest does not
	// cover: the body can then be replaced.
	InsecureAllowUnsignedBody bool
	// InsecureAllowUncoveredAuthorization accepts a signature that does not
	// cover the Authorization header: a stolen signature can then carry
	// another token.
	InsecureAllowUncoveredAuthorization bool
	// InsecureAllowUncoveredTarget accepts a signature that covers neither
	// @target-uri nor @authority, @path and @query.
	InsecureAllowUncoveredTarget bool
	// InsecureAllowUncoveredMethod accepts a signature without @method.
	InsecureAllowUncoveredMethod bool
}

// Result is a verified signature. It is plain data: a copy is as good as
// the original, and Verify never returns one beside an error.
type Result struct {
	KeyID     string
	Label     string
	Algorithm string
	Created   time.Time
	// Body is the request body that Content-Digest was checked against,
	// as Verify returns it (nil when it was not read): Verify consumes
	// r.Body. Handler leaves Body nil and hands next a request whose Body
	// reads the verified bytes, from a buffer that is recycled when next
	// returns; as with any net/http request body, it must not be read
	// after that (a read then fails with an error, and never sees another
	// request's bytes).
	Body []byte

	input []string // the Signature-Input field lines
}

// handled is the state of one request that Handler verified and hands
// to next, in one allocation: the Result, the context that carries it,
// and the reader of the pooled body. It is never reused, so a reader left
// over from a finished request finds its body released, not another
// request's bytes.
type handled struct {
	res  Result
	ctx  resultCtx
	body pooledBody
}

// resultCtx is the request context Handler hands next: its parent plus
// the Result, which ResultFrom and KeyIDFrom find.
type resultCtx struct {
	context.Context
	res *Result
}

func (c *resultCtx) Value(key any) any {
	if key == resultKey {
		return c.res
	}
	return c.Context.Value(key)
}

func (c *resultCtx) String() string { return "signing.Result context" }

// pooledBody is the verified body Handler hands next: bytes in a pooled
// buffer, readable until release.
type pooledBody struct {
	mu       sync.Mutex
	buf      *bodyBuffer // nil once released
	released bool
	reader   bodyReader // the request's Body
}

// bodyReader reads a pooledBody from its own offset: the request's Body,
// and each reader GetBody returns.
type bodyReader struct {
	pb  *pooledBody
	off int
}

// errBodyReleased is the error of a read of a body after its handler
// returned.
var errBodyReleased = errors.New("signing: request body read after the handler returned")

func (b *bodyReader) Read(p []byte) (int, error) {
	b.pb.mu.Lock()
	defer b.pb.mu.Unlock()
	if b.pb.released {
		return 0, errBodyReleased
	}
	data := b.pb.buf.b
	if b.off >= len(data) {
		return 0, io.EOF
	}
	n := copy(p, data[b.off:])
	b.off += n
	return n, nil
}

func (b *bodyReader) Close() error { return nil }

// getBody is the request's GetBody: a new reader from the start.
func (pb *pooledBody) getBody() (io.ReadCloser, error) { return &bodyReader{pb: pb}, nil }

// release ends the body's life and recycles its buffer.
func (pb *pooledBody) release() {
	pb.mu.Lock()
	buf := pb.buf
	pb.buf, pb.released = nil, true
	pb.mu.Unlock()
	putBodyBuffer(buf)
}

// bodyBuffer is a buffer that Handler reads bodies into, recycled through
// bodyPool.
type bodyBuffer struct{ b []byte }

// defaultFutureSkew is the default Config.FutureSkew.
const defaultFutureSkew = 30 * time.Second

// maxBodyBytes is the largest Config.MaxBodyBytes.
const maxBodyBytes = 1 << 30

// maxPooledBody is the largest buffer kept for reuse: bodies are usually
// small, and a rare large one should not keep its memory alive.
const maxPooledBody = 64 << 10

var bodyPool = sync.Pool{New: func() any { return new(bodyBuffer) }}

func putBodyBuffer(buf *bodyBuffer) {
	if buf == nil || cap(buf.b) > maxPooledBody {
		return
	}
	buf.b = buf.b[:0]
	bodyPool.Put(buf)
}

// Covered returns the covered component identifiers, serialized
// (`"@method"`, `"@query-param";name="id"`).
func (res *Result) Covered() []string {
	d, err := sfv.ParseDictionary(res.input)
	if err != nil {
		return nil
	}
	m := d.Get(res.Label)
	if m == nil {
		return nil
	}
	out := make([]string, 0, len(m.Items))
	for _, it := range m.Items {
		b, err := sfv.AppendItem(nil, &it)
		if err == nil {
			out = append(out, string(b))
		}
	}
	return out
}

// Verifier verifies RFC 9421 signatures on requests. It is safe for
// concurrent use by multiple goroutines. The zero value is not usable;
// create one with [New].
//
// A Verifier keeps the keyed HMAC-SHA256 state of up to 1024 recently
// seen key IDs (about 700 B each), so that a device's secret is not
// expanded into its pads on every request; a state is used only for the
// exact key ID and secret it was made from, so a rotated secret takes
// effect on the next request. It also remembers, parsed and compiled, the
// lists of covered components of the last eight kinds of verified
// signature (a client signs every request with the same list): a
// Signature-Input that starts with exactly such a list has only its
// parameters parsed. A list is remembered only once its signature
// verified, so unauthenticated traffic cannot churn them. Parsing works
// in pooled buffers; a verification allocates the body it reads and its
// [Result].
type Verifier struct {
	cfg      Config
	required []sfv.Item // Config.Profile.Components, parsed
	macs     *macCache
	lists    listCache
}

// New validates cfg, fills in its defaults and returns a Verifier.
func New(cfg Config) (*Verifier, error) {
	if cfg.Keys == nil {
		return nil, errors.New("signing: Config.Keys is required")
	}
	if ks, ok := cfg.Keys.(interface{ check() error }); ok { // StaticKeys, DerivedKeys
		if err := ks.check(); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"Window", int64(cfg.Window)}, {"FutureSkew", int64(cfg.FutureSkew)}, {"ReorderSlack", int64(cfg.ReorderSlack)},
		{"MaxBodyBytes", cfg.MaxBodyBytes}, {"ReplayCacheSize", int64(cfg.ReplayCacheSize)},
	} {
		if f.v < 0 {
			return nil, fmt.Errorf("signing: Config.%s must not be negative; leave it 0 for the default", f.name)
		}
	}
	if cfg.Window == 0 {
		cfg.Window = 5 * time.Minute
	}
	if cfg.FutureSkew == 0 {
		cfg.FutureSkew = min(defaultFutureSkew, cfg.Window)
	}
	if cfg.FutureSkew > cfg.Window {
		return nil, errors.New("signing: Config.FutureSkew exceeds Config.Window")
	}
	if cfg.ReorderSlack == 0 {
		cfg.ReorderSlack = 5 * time.Second
	}
	if cfg.ReorderSlack > cfg.Window {
		return nil, errors.New("signing: Config.ReorderSlack exceeds Config.Window")
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.MaxBodyBytes > maxBodyBytes {
		return nil, errors.New("signing: Config.MaxBodyBytes is over 1 GiB: a body is held in memory while it is verified")
	}
	if cfg.Scheme == "" {
		cfg.Scheme = "https"
	}
	cfg.Scheme = strings.ToLower(cfg.Scheme)
	if cfg.Scheme != "https" && cfg.Scheme != "http" {
		return nil, fmt.Errorf("signing: Config.Scheme %q is not http or https", cfg.Scheme)
	}
	cfg.Authority = normalizeAuthority(cfg.Scheme, cfg.Authority)
	if cfg.DeviceModelHeader == "" {
		cfg.DeviceModelHeader = "X-Device-Model"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Profile.Components = slices.Clone(cfg.Profile.Components) // the caller's slice may change
	required, err := cfg.Profile.required()
	if err != nil {
		return nil, err
	}
	if cfg.ReplayStore == nil {
		cfg.ReplayStore = NewMemoryReplayStore(cfg.ReplayCacheSize, cfg.Window, cfg.Now)
	}
	events.WarnUnobserved(cfg.Logger, "signing")
	return &Verifier{cfg: cfg, required: required, macs: newMACCache()}, nil
}

// required parses Profile.Components and checks that each is a component
// a request can cover here (as a signature's own components are).
func (p Profile) required() ([]sfv.Item, error) {
	var out []sfv.Item
	for _, c := range p.Components {
		it, err := parseComponent(c)
		if err == nil {
			_, err = compileComponent(&it)
		}
		if err != nil {
			return nil, fmt.Errorf("signing: Profile.Components: %q is not a component identifier a request can cover (%v); write a lower-case field name (\"x-device-id\") or a derived component (\"@query-param\";name=\"id\")", c, err)
		}
		out = append(out, it)
	}
	return out, nil
}

// parseComponent parses a component identifier given as `name`,
// `"name"` or `"name";param`.
func parseComponent(c string) (sfv.Item, error) {
	if !strings.HasPrefix(c, `"`) {
		c = `"` + c + `"`
	}
	it, err := sfv.ParseItem([]string{c})
	if err != nil || it.Value.Kind != sfv.String {
		return sfv.Item{}, errors.New("not a structured-field String")
	}
	return it, nil
}

// Ready reports whether the Verifier's stores can answer: it calls
// Ready(ctx) on Config.Keys and Config.ReplayStore, each when it has that
// method (a key store or replay store on a database or Redis), and
// returns the first error, naming the field. The in-memory stores are
// always ready. For a readiness endpoint (see telemetry's health
// handler).
func (v *Verifier) Ready(ctx context.Context) error {
	type readier interface{ Ready(context.Context) error }
	if r, ok := v.cfg.Keys.(readier); ok {
		if err := r.Ready(ctx); err != nil {
			return fmt.Errorf("signing: Config.Keys not ready: %w", err)
		}
	}
	if r, ok := v.cfg.ReplayStore.(readier); ok {
		if err := r.Ready(ctx); err != nil {
			return fmt.Errorf("signing: Config.ReplayStore not ready: %w", err)
		}
	}
	return nil
}

type ctxKey struct{ name string }

var resultKey = &ctxKey{"signing"}

// KeyIDFrom returns the key ID of the verified signature of the request
// whose context is ctx.
func KeyIDFrom(ctx context.Context) (string, bool) {
	res, ok := ResultFrom(ctx)
	if !ok {
		return "", false
	}
	return res.KeyID, true
}

// ResultFrom returns the verified signature of the request whose context
// is ctx.
func ResultFrom(ctx context.Context) (*Result, bool) {
	res, ok := ctx.Value(resultKey).(*Result)
	return res, ok
}

// Handler returns next behind signature verification with Config.Profile.
// In shadow mode (Config.Shadow) a refused request is logged with
// shadow=true and reaches next without a [Result]. It panics if next is
// nil.
func (v *Verifier) Handler(next http.Handler) http.Handler {
	return v.RequireProfile(v.cfg.Profile)(next)
}

// RequireProfile returns middleware that verifies signatures against p
// instead of Config.Profile, for endpoints that need more (or, with an
// Insecure field, less). It panics if p is invalid or next is nil.
func (v *Verifier) RequireProfile(p Profile) func(http.Handler) http.Handler {
	req, err := p.required()
	if err != nil {
		panic(err.Error())
	}
	p.Components = slices.Clone(p.Components)
	return func(next http.Handler) http.Handler {
		if next == nil {
			panic("signing: nil handler")
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var res Result // on the stack: a rejection allocates no state
			buf := bodyPool.Get().(*bodyBuffer)
			in, seen := r, (*shadowbody.Body)(nil)
			if v.cfg.Shadow {
				in, seen = shadowbody.Watch(r)
			}
			if err := v.verify(in, p, req, buf, &res); err != nil {
				// res.KeyID is the key the request claims, unverified:
				// for the log only.
				refused := v.reject(w, r, p, err, res.KeyID)
				putBodyBuffer(buf)
				if !refused {
					next.ServeHTTP(w, seen.Restore(r))
				}
				return
			}
			st := &handled{res: res}
			// As http.MaxBytesHandler does: a shallow copy of r with the
			// Result in its context and, when the body was read, a new
			// Body reading the verified bytes.
			st.ctx = resultCtx{Context: r.Context(), res: &st.res}
			r2 := r.WithContext(&st.ctx)
			if st.res.Body == nil {
				putBodyBuffer(buf)
				next.ServeHTTP(w, r2)
				return
			}
			// The body was read into buf: next reads it from there, and
			// buf is recycled when next returns (not if it panics: then
			// it is left to the garbage collector).
			buf.b, st.res.Body = st.res.Body, nil
			pb := &st.body
			pb.buf, pb.reader = buf, bodyReader{pb: pb}
			r2.Body, r2.ContentLength, r2.GetBody = &pb.reader, int64(len(buf.b)), pb.getBody
			next.ServeHTTP(w, r2)
			pb.release()
		})
	}
}

// Verify checks the signature of r against Config.Profile: structured
// fields and profile, key, signature and Content-Digest, then freshness
// and replay, in that order, so that unauthenticated traffic never reaches
// the replay store. It reads r.Body when the request has one (returned in
// Result.Body). Errors match the package's sentinels; on an error the
// Result is nil.
func (v *Verifier) Verify(r *http.Request) (*Result, error) {
	var res Result // on the stack until it is verified
	if err := v.verify(r, v.cfg.Profile, v.required, nil, &res); err != nil {
		return nil, err
	}
	out := res
	return &out, nil
}

// scratch is the working storage of one verification, recycled through
// scratchPool: parsed fields and the signature base. Nothing in it
// outlives the verification.
type scratch struct {
	sfv   sfv.Scratch
	list  componentList // the signature's components, when not remembered
	base  []byte
	probe [1]byte // reads past the body's announced end
}

var scratchPool = sync.Pool{New: func() any { return &scratch{base: make([]byte, 0, 1024)} }}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func putScratch(sc *scratch) {
	sc.sfv.Reset()
	clear(sc.list.comps) // its strings point into the last request
	sc.list.items = nil
	if cap(sc.base) > 64<<10 {
		sc.base = make([]byte, 0, 1024) // keep a grown buffer, but not a huge one
	}
	scratchPool.Put(sc)
}

// sigInput is one parsed, profile-checked signature. It is passed and
// returned by value, and lives on the stack: written there, its fields
// need none of the write barriers that the collector's marking puts on
// writes to the heap.
type sigInput struct {
	label   string
	items   []sfv.Item
	params  sfv.Params
	raw     string   // the inner list's text, when canonical (sfv.Member.Raw)
	lines   []string // the Signature-Input field lines
	sig     []byte
	keyID   string
	nonce   string
	alg     string
	created int64
	expires int64
	covered coverage
	list    *componentList // items, compiled: sc.list, or remembered by listCache
	learn   bool           // list is worth remembering once the signature verifies
}

// verify is Verify against p, filling in res. It reads the body into
// buf's storage when buf is not nil and large enough (res.Body then
// shares it; the caller keeps res.Body as buf's new contents), into a new
// slice otherwise. On an error, res holds what was parsed, unverified
// (KeyID is the key the request claims): the caller may log it, and must
// not hand it on.
func (v *Verifier) verify(r *http.Request, p Profile, required []sfv.Item, buf *bodyBuffer, res *Result) error {
	// Not a defer: a panic part way through must not put a half-written
	// scratch back in the pool (it is left to the garbage collector), and
	// verifyWith has too many returns for an open-coded defer.
	sc := getScratch()
	err := v.verifyWith(r, p, required, buf, sc, res)
	putScratch(sc)
	return err
}

// verifyWith is verify with sc as its working storage.
func (v *Verifier) verifyWith(r *http.Request, p Profile, required []sfv.Item, buf *bodyBuffer, sc *scratch, res *Result) error {
	ctx := r.Context()
	// 1. Parse, profile checks, and the covered components compiled.
	in, err := v.parse(r, p, required, sc)
	if err != nil {
		res.KeyID = in.keyID // claimed, unverified: for the log only
		return err
	}
	*res = Result{KeyID: in.keyID, Label: in.label, Created: time.Unix(in.created, 0), input: in.lines}
	// 2. The signature base: everything a request can be refused for
	// without its key is checked before the key is looked up, so that
	// the answer to a request never depends on whether its key exists
	// (a known key with a component the request lacks, and an unknown
	// one, both get the malformed answer).
	base, err := signatureBase(sc.base[:0], r, v.target(r), in.list, in.params, in.raw)
	if err != nil {
		return err
	}
	sc.base = base[:0]
	// 3. Key lookup. Unknown, revoked and mismatched keys get the answer
	// of a bad signature (see WriteError); the log tells them apart.
	key, err := v.cfg.Keys.Key(ctx, in.keyID)
	switch {
	case err == nil: // the usual case, before the error tests
	case errors.Is(err, ErrUnknownKey):
		return fmt.Errorf("%w: %q", ErrUnknownKey, in.keyID)
	default:
		return fmt.Errorf("%w: key store: %v", ErrStoreUnavailable, err)
	}
	switch {
	case key.Revoked:
		return ErrRevokedKey
	case in.alg != "" && in.alg != key.Algorithm:
		return ErrAlgorithm
	}
	res.Algorithm = key.Algorithm
	// 4. Signature, then the body against Content-Digest.
	if err := v.verifyWithKey(in.keyID, key, base, in.sig); err != nil {
		return err
	}
	if in.learn {
		v.lists.remember(in.lines[0], in.label)
	}
	if in.covered.has(coversContentDigest) || hasBody(r) && !p.InsecureAllowUnsignedBody {
		var dst []byte
		if buf != nil {
			dst = buf.b[:0]
		}
		body, err := readBody(dst, r, v.cfg.MaxBodyBytes, sc.probe[:])
		if err != nil {
			return err
		}
		if err := checkDigest(&sc.sfv, r.Header["Content-Digest"], body); err != nil {
			return err
		}
		res.Body = body
	}
	// 5. Freshness and replay.
	now, created := v.cfg.Now(), res.Created
	switch {
	case created.After(now.Add(v.cfg.FutureSkew)):
		return ErrFuture
	case !created.After(now.Add(-v.cfg.Window)):
		// Exactly Window old is expired too: the nonce is held until
		// created + Window, which is then already past.
		return ErrExpired
	case in.expires != 0 && !now.Before(time.Unix(in.expires, 0)):
		return ErrExpired
	}
	ok, err := v.cfg.ReplayStore.Advance(ctx, in.keyID, created, v.cfg.ReorderSlack, 2*v.cfg.Window)
	if err != nil {
		return fmt.Errorf("%w: replay store: %v", ErrStoreUnavailable, err)
	}
	if !ok {
		return ErrStale
	}
	if in.nonce != "" {
		ok, err := v.cfg.ReplayStore.UseNonce(ctx, in.keyID, in.nonce, created, created.Add(v.cfg.Window))
		switch {
		case err == nil && ok:
		case errors.Is(err, ErrReplayFloor):
			return ErrReplayFloor
		case err != nil:
			return fmt.Errorf("%w: replay store: %v", ErrStoreUnavailable, err)
		case !ok:
			return ErrReplay
		}
	}
	return nil
}

// parse reads Signature-Input and Signature, picks the signature to
// verify, checks it against the profile and compiles its components: a
// line that starts with a list verified before (see listCache) has only
// its parameters parsed and reuses the list compiled; any other is parsed
// whole and compiled into sc, and in.learn is set when its list is worth
// remembering once its signature verifies. When the picked signature's
// components do not compile, in holds its claimed key ID beside the error,
// for the log.
func (v *Verifier) parse(r *http.Request, p Profile, required []sfv.Item, sc *scratch) (in sigInput, err error) {
	inLines, sigLines := r.Header["Signature-Input"], r.Header["Signature"] // canonical keys: no lookup cost
	if len(inLines) == 0 && len(sigLines) == 0 {
		return sigInput{}, ErrMissingSignature
	}
	if len(inLines) == 0 || len(sigLines) == 0 {
		return sigInput{}, fmt.Errorf("%w: Signature-Input and Signature must both be present", ErrMalformed)
	}
	var inputs sfv.Dictionary
	var one [1]sfv.DictMember
	var cached *cachedList
	if len(inLines) == 1 {
		if e := v.lists.lookup(inLines[0]); e != nil {
			if m, ok := parseCached(&sc.sfv, inLines[0], e); ok {
				one[0] = sfv.DictMember{Key: e.label, Member: m}
				inputs, cached = sfv.Dictionary{Members: one[:]}, e
			}
		}
	}
	if cached == nil {
		var err error
		if inputs, err = parseDictionary(&sc.sfv, inLines); err != nil {
			return sigInput{}, fmt.Errorf("%w: Signature-Input: %v", ErrMalformed, err)
		}
	}
	sigs, err := parseDictionary(&sc.sfv, sigLines)
	if err != nil {
		return sigInput{}, fmt.Errorf("%w: Signature: %v", ErrMalformed, err)
	}
	var lastErr error
	for i := range inputs.Members {
		m := &inputs.Members[i] // by index: a member is large to copy
		if !m.IsInnerList {
			return sigInput{}, fmt.Errorf("%w: Signature-Input %q is not an inner list", ErrMalformed, m.Key)
		}
		if tag, _ := m.Params.Get("tag"); p.Tag != "" && (tag.Kind != sfv.String || tag.Str != p.Tag) {
			continue
		}
		in, err = checkProfile(r, m.Key, m.Items, m.Params, p, required)
		if err != nil {
			lastErr = err
			continue
		}
		sm := sigs.Get(m.Key)
		if sm == nil {
			return sigInput{}, fmt.Errorf("%w: no Signature for label %q", ErrMalformed, m.Key)
		}
		if sm.IsInnerList || sm.Item.Value.Kind != sfv.ByteSequence {
			return sigInput{}, fmt.Errorf("%w: Signature %q is not a byte sequence", ErrMalformed, m.Key)
		}
		in.sig, in.raw, in.lines = sm.Item.Value.Bytes, m.Raw, inLines
		if cached != nil {
			in.list = cached.list
			return in, nil
		}
		if err := sc.list.compile(in.items); err != nil {
			return sigInput{keyID: in.keyID}, err
		}
		in.list, in.learn = &sc.list, len(inputs.Members) == 1
		return in, nil
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("%w: no signature to verify", ErrProfile)
	}
	return sigInput{}, lastErr
}

// coverage is a set of the plain components a signature covers that the
// profile checks, found in one pass over its items.
type coverage uint8

const (
	coversMethod coverage = 1 << iota
	coversTargetURI
	coversAuthority
	coversPath
	coversQuery
	coversContentDigest
	coversAuthorization
)

// coverageOfItems returns the plain (parameterless) components items
// cover, of those coverage names.
func coverageOfItems(items []sfv.Item) coverage {
	var c coverage
	for i := range items {
		if len(items[i].Params) != 0 {
			continue
		}
		switch items[i].Value.Str {
		case "@method":
			c |= coversMethod
		case "@target-uri":
			c |= coversTargetURI
		case "@authority":
			c |= coversAuthority
		case "@path":
			c |= coversPath
		case "@query":
			c |= coversQuery
		case "content-digest":
			c |= coversContentDigest
		case "authorization":
			c |= coversAuthorization
		}
	}
	return c
}

func (c coverage) has(f coverage) bool { return c&f == f }

// MaxComponents is the most components one signature may cover. Real
// profiles cover a dozen at most; the cap keeps the work done before the
// MAC is checked (building the signature base, which any client can ask
// for by naming a key ID) linear and small.
const MaxComponents = 64

// checkProfile checks one signature's parameters and covered components.
func checkProfile(r *http.Request, label string, items []sfv.Item, params sfv.Params, p Profile, required []sfv.Item) (sigInput, error) {
	if len(items) > MaxComponents {
		return sigInput{}, fmt.Errorf("%w: %d covered components, more than %d", ErrMalformed, len(items), MaxComponents)
	}
	in := sigInput{label: label, items: items, params: params, covered: coverageOfItems(items)}
	for i := range params {
		prm := &params[i]
		var ok bool
		switch prm.Key {
		case "created":
			in.created, ok = prm.Value.Int, prm.Value.Kind == sfv.Integer
		case "expires":
			in.expires, ok = prm.Value.Int, prm.Value.Kind == sfv.Integer
		case "keyid":
			in.keyID, ok = prm.Value.Str, prm.Value.Kind == sfv.String
		case "nonce":
			in.nonce, ok = prm.Value.Str, prm.Value.Kind == sfv.String
		case "alg":
			in.alg, ok = prm.Value.Str, prm.Value.Kind == sfv.String
		default:
			ok = true // tag and unknown parameters are signed, not interpreted
		}
		if !ok {
			return sigInput{}, fmt.Errorf("%w: parameter %q has the wrong type", ErrMalformed, prm.Key)
		}
	}
	switch {
	case in.created <= 0:
		return sigInput{}, fmt.Errorf("%w: created is required", ErrProfile)
	case in.keyID == "":
		return sigInput{}, fmt.Errorf("%w: keyid is required", ErrProfile)
	case in.nonce == "" && !p.InsecureAllowMissingNonce:
		return sigInput{}, fmt.Errorf("%w: nonce is required", ErrProfile)
	case len(in.nonce) > 256:
		return sigInput{}, fmt.Errorf("%w: nonce too long", ErrMalformed)
	}
	cov := in.covered
	if !cov.has(coversMethod) && !p.InsecureAllowUncoveredMethod {
		return sigInput{}, fmt.Errorf("%w: @method not covered", ErrProfile)
	}
	if !cov.has(coversTargetURI) && !cov.has(coversAuthority|coversPath|coversQuery) && !p.InsecureAllowUncoveredTarget {
		return sigInput{}, fmt.Errorf("%w: target URI not covered", ErrProfile)
	}
	if hasBody(r) && !cov.has(coversContentDigest) && !p.InsecureAllowUnsignedBody {
		return sigInput{}, fmt.Errorf("%w: body not covered by content-digest", ErrProfile)
	}
	if !cov.has(coversAuthorization) && hasField(r.Header, "Authorization") && !p.InsecureAllowUncoveredAuthorization {
		return sigInput{}, fmt.Errorf("%w: authorization not covered", ErrProfile)
	}
	for _, want := range required {
		found := false
		for i := range items {
			if sameIdentifier(&items[i], &want) {
				found = true
				break
			}
		}
		if !found {
			return sigInput{}, fmt.Errorf("%w: %s not covered", ErrProfile, want.Value.Str)
		}
	}
	return in, nil
}

// hasBody reports whether the request carries a body.
func hasBody(r *http.Request) bool {
	return r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody)
}

// readBody reads r's body, of at most limit bytes, into dst's storage
// when it is large enough (dst nil: a new slice, of exactly the length
// when it is known); probe is a buffer of at least one byte that it may
// overwrite.
func readBody(dst []byte, r *http.Request, limit int64, probe []byte) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return []byte{}, nil
	}
	if r.ContentLength > limit {
		return nil, ErrBodyTooLarge
	}
	if r.ContentLength > 0 {
		// The length is known: one buffer of that size, and a read of
		// one more byte into probe to catch a body longer than announced.
		var b []byte
		if n := int(r.ContentLength); n <= cap(dst) {
			b = dst[:n]
		} else {
			b = make([]byte, n)
		}
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return nil, fmt.Errorf("%w: read body: %v", ErrMalformed, err)
		}
		switch _, err := io.ReadFull(r.Body, probe[:1]); err {
		case io.EOF:
			return b, nil
		case nil:
			return nil, fmt.Errorf("%w: body longer than Content-Length", ErrMalformed)
		default:
			return nil, fmt.Errorf("%w: read body: %v", ErrMalformed, err)
		}
	}
	// Unknown length: read until EOF, growing dst, and never more than
	// limit+1 bytes.
	b := dst[:0]
	for {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(max(512, len(b)), int(limit+1)-len(b)))
		}
		n, err := r.Body.Read(b[len(b):min(cap(b), int(limit+1))])
		b = b[:len(b)+n]
		switch {
		case int64(len(b)) > limit:
			return nil, ErrBodyTooLarge
		case err == io.EOF:
			return b, nil
		case err != nil:
			return nil, fmt.Errorf("%w: read body: %v", ErrMalformed, err)
		}
	}
}

// verifyWithKey checks sig over base with keyID's key and its algorithm.
// The key's Algorithm alone decides how its material is used, and a key
// holding material of another kind (a public key on an hmac-sha256 key,
// a secret on a public-key one) is refused, never reinterpreted: an
// HMAC secret is never used as a public key, nor a public key's bytes
// as an HMAC secret.
func (v *Verifier) verifyWithKey(keyID string, key Key, base, sig []byte) error {
	switch key.Algorithm {
	case AlgHMACSHA256:
		switch {
		case key.PublicKey != nil:
			return fmt.Errorf("%w: hmac-sha256 key %q holds a public key", ErrAlgorithm, keyID)
		case len(key.Secret) < minSecretLen:
			return fmt.Errorf("%w: %v", ErrUnknownKey, errNoSecret)
		case !v.macs.equal(keyID, key.Secret, base, sig):
			return ErrSignature
		}
		return nil
	case AlgECDSAP256SHA256:
		pub, ok := key.PublicKey.(*ecdsa.PublicKey)
		switch {
		case !ok || pub.Curve != elliptic.P256() || len(key.Secret) != 0:
			return fmt.Errorf("%w: key %q is not an ECDSA P-256 public key alone", ErrAlgorithm, keyID)
		case len(sig) != 64:
			return fmt.Errorf("%w: %d bytes, not r || s in 64 (RFC 9421 §3.3.4; not ASN.1)", ErrSignature, len(sig))
		}
		h := sha256.Sum256(base)
		if !ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			return ErrSignature
		}
		return nil
	case AlgEd25519:
		pub, ok := key.PublicKey.(ed25519.PublicKey)
		switch {
		case !ok || len(pub) != ed25519.PublicKeySize || len(key.Secret) != 0:
			return fmt.Errorf("%w: key %q is not an Ed25519 public key alone", ErrAlgorithm, keyID)
		case len(sig) != ed25519.SignatureSize:
			return fmt.Errorf("%w: %d bytes, not 64", ErrSignature, len(sig))
		case !ed25519.Verify(pub, base, sig):
			return ErrSignature
		}
		return nil
	}
	return fmt.Errorf("%w: key %q has algorithm %q", ErrAlgorithm, keyID, key.Algorithm)
}

// acceptSignature is the Accept-Signature value for r under the default
// profile: what a client must sign.
func (v *Verifier) acceptSignature(r *http.Request) string {
	comp := func(name string) sfv.Item { return sfv.Item{Value: sfv.BareItem{Kind: sfv.String, Str: name}} }
	items := []sfv.Item{comp("@method"), comp("@target-uri")}
	if hasBody(r) {
		items = append(items, comp("content-digest"))
	}
	if r.Header.Get("Authorization") != "" {
		items = append(items, comp("authorization"))
	}
	flag := sfv.BareItem{Kind: sfv.Boolean, Bool: true}
	params := sfv.Params{{Key: "created", Value: flag}, {Key: "keyid", Value: flag}, {Key: "nonce", Value: flag}}
	if v.cfg.Profile.Tag != "" {
		params = append(params, sfv.Param{Key: "tag", Value: sfv.BareItem{Kind: sfv.String, Str: v.cfg.Profile.Tag}})
	}
	b, err := sfv.AppendDictionary(nil, sfv.Dictionary{Members: []sfv.DictMember{{Key: "sig1", Member: sfv.Member{IsInnerList: true, Items: items, Params: params}}}})
	if err != nil {
		return ""
	}
	return string(b)
}

// target is the scheme and authority the verifier puts in @scheme,
// @authority and @target-uri for r.
func (v *Verifier) target(r *http.Request) target {
	authority := v.cfg.Authority
	if authority == "" {
		authority = normalizeAuthority(v.cfg.Scheme, r.Host)
	}
	return target{scheme: v.cfg.Scheme, authority: authority}
}

// mismatchHint is logged with every signature mismatch: the usual cause
// of mismatches from honest clients.
const mismatchHint = "@scheme and @authority come from Config.Scheme (default https) and Config.Authority (default the request's Host); " +
	"if every client mismatches, set them to what clients sign (a client that connects without TLS, in development or to a TLS-terminating proxy, signs http; a proxy may rewrite Host)"

// reject logs and answers a rejected request, and reports true; keyID is
// the key it claims, unverified ("" when it names none). In shadow mode
// it logs the refusal with shadow=true, answers nothing and reports
// false: the caller passes r on.
func (v *Verifier) reject(w http.ResponseWriter, r *http.Request, p Profile, err error, keyID string) bool {
	event := "signature_rejected"
	switch {
	case errors.Is(err, ErrSignature):
		event = "signature_mismatch"
	case errors.Is(err, ErrReplay), errors.Is(err, ErrStale):
		event = "replay"
	case errors.Is(err, ErrReplayFloor):
		event = "replay_floor"
	}
	attrs := []slog.Attr{slog.String("event", event), slog.String("reason", reason(err))}
	if keyID != "" {
		attrs = append(attrs, slog.String("key_id", keyID))
	}
	if m := deviceModel(r.Header.Get(v.cfg.DeviceModelHeader)); m != "" {
		attrs = append(attrs, slog.String("device_model", m))
	}
	if event == "signature_mismatch" {
		// What the server signed the base with: never the secret, the
		// signature or the nonce.
		t := v.target(r)
		attrs = append(attrs, slog.String("scheme", t.scheme), slog.String("authority", t.authority), slog.String("hint", mismatchHint))
	}
	level := slog.LevelWarn
	if errors.Is(err, ErrMissingSignature) {
		level = slog.LevelInfo
	}
	if v.cfg.Shadow {
		attrs = append(attrs, slog.Bool("shadow", true))
	}
	events.Log(r.Context(), v.cfg.Logger, level, "signing: request rejected", attrs...)
	if v.cfg.Shadow {
		return false
	}
	if v.cfg.ErrorHandler != nil {
		v.cfg.ErrorHandler(w, r, err)
		return true
	}
	v.WriteError(w, r, err)
	return true
}

// deviceModel keeps a device model header fit for logs: at most 64
// characters of a conservative set.
func deviceModel(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(" ._,-()/", c) >= 0) {
			return ""
		}
	}
	return s
}

// lowerASCII lower-cases s, without allocating when it already is.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// hasField reports whether h has a non-empty first value for the canonical
// key, as h.Get(key) != "" does without canonicalizing key again.
func hasField(h http.Header, key string) bool {
	v := h[key]
	return len(v) > 0 && v[0] != ""
}

// sameIdentifier reports whether two component identifiers are equal:
// the same name and the same parameters in the same order.
func sameIdentifier(a, b *sfv.Item) bool {
	if a.Value.Str != b.Value.Str || len(a.Params) != len(b.Params) {
		return false
	}
	for i := range a.Params {
		if a.Params[i].Key != b.Params[i].Key || a.Params[i].Value.Str != b.Params[i].Value.Str ||
			a.Params[i].Value.Kind != b.Params[i].Value.Kind || a.Params[i].Value.Bool != b.Params[i].Value.Bool {
			return false
		}
	}
	return true
}
