package attest

import (
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"slices"
	"strconv"

	"github.com/apiguard/apiguard/internal/clientip"
	"github.com/oschwald/maxminddb-golang/v2"
)

// Location is where a request came from, with the radius it is accurate
// to.
type Location struct {
	Lat, Lon   float64
	AccuracyKm float64
}

// Locator places a request. ok is false when it cannot.
type Locator interface {
	Locate(r *http.Request) (loc Location, ok bool)
}

// HeaderLocator reads the location a CDN or load balancer adds to requests
// (latitude and longitude headers, and optionally an accuracy radius in
// km), trusting the headers only when the TCP peer is one of
// TrustedProxies, so that clients cannot forge their whereabouts.
type HeaderLocator struct {
	// TrustedProxies are the prefixes of the CDN's egress. Required.
	TrustedProxies []netip.Prefix
	// LatitudeHeader and LongitudeHeader. Default: X-Geo-Latitude and
	// X-Geo-Longitude.
	LatitudeHeader, LongitudeHeader string
	// AccuracyHeader is an accuracy radius in km. Default: none (the
	// location is taken as accurate to DefaultAccuracyKm).
	AccuracyHeader string
	// DefaultAccuracyKm applies when there is no accuracy header.
	// Default: 50.
	DefaultAccuracyKm float64
}

// Locate implements [Locator].
func (h *HeaderLocator) Locate(r *http.Request) (Location, bool) {
	peer, err := clientip.PeerAddr(r.RemoteAddr)
	if err != nil || !slices.ContainsFunc(h.TrustedProxies, func(p netip.Prefix) bool { return p.Contains(peer) }) {
		return Location{}, false
	}
	latH, lonH := h.LatitudeHeader, h.LongitudeHeader
	if latH == "" {
		latH = "X-Geo-Latitude"
	}
	if lonH == "" {
		lonH = "X-Geo-Longitude"
	}
	lat, err1 := strconv.ParseFloat(r.Header.Get(latH), 64)
	lon, err2 := strconv.ParseFloat(r.Header.Get(lonH), 64)
	if err1 != nil || err2 != nil || !validLatLon(lat, lon) {
		return Location{}, false
	}
	acc := h.DefaultAccuracyKm
	if acc <= 0 {
		acc = 50
	}
	if h.AccuracyHeader != "" {
		if a, err := strconv.ParseFloat(r.Header.Get(h.AccuracyHeader), 64); err == nil && a >= 0 && a < 20000 {
			acc = a
		}
	}
	return Location{Lat: lat, Lon: lon, AccuracyKm: acc}, true
}

func validLatLon(lat, lon float64) bool {
	return lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180 && !math.IsNaN(lat) && !math.IsNaN(lon)
}

// MaxMindLocator places the client address in a MaxMind GeoIP2/GeoLite2
// City database. The client address is the TCP peer, or, behind
// TrustedProxies, the first untrusted X-Forwarded-For hop from the right.
type MaxMindLocator struct {
	db  *maxminddb.Reader
	res *clientip.Resolver
}

// NewMaxMindLocator opens a database file.
func NewMaxMindLocator(path string, trustedProxies ...netip.Prefix) (*MaxMindLocator, error) {
	db, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("attest: open maxmind database: %w", err)
	}
	return newMaxMind(db, trustedProxies)
}

// NewMaxMindLocatorBytes uses a database held in memory.
func NewMaxMindLocatorBytes(db []byte, trustedProxies ...netip.Prefix) (*MaxMindLocator, error) {
	r, err := maxminddb.OpenBytes(db)
	if err != nil {
		return nil, fmt.Errorf("attest: open maxmind database: %w", err)
	}
	return newMaxMind(r, trustedProxies)
}

func newMaxMind(db *maxminddb.Reader, trusted []netip.Prefix) (*MaxMindLocator, error) {
	res, err := clientip.New(clientip.XForwardedFor, trusted...)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("attest: %w", err)
	}
	return &MaxMindLocator{db: db, res: res}, nil
}

// Close closes the database.
func (m *MaxMindLocator) Close() error { return m.db.Close() }

// Locate implements [Locator].
func (m *MaxMindLocator) Locate(r *http.Request) (Location, bool) {
	ip, err := m.res.ClientIP(r)
	if err != nil {
		return Location{}, false
	}
	var rec struct {
		Location struct {
			Latitude       *float64 `maxminddb:"latitude"`
			Longitude      *float64 `maxminddb:"longitude"`
			AccuracyRadius uint16   `maxminddb:"accuracy_radius"`
		} `maxminddb:"location"`
	}
	res := m.db.Lookup(ip)
	if !res.Found() || res.Decode(&rec) != nil || rec.Location.Latitude == nil || rec.Location.Longitude == nil {
		return Location{}, false
	}
	lat, lon := *rec.Location.Latitude, *rec.Location.Longitude
	if !validLatLon(lat, lon) {
		return Location{}, false
	}
	return Location{Lat: lat, Lon: lon, AccuracyKm: float64(rec.Location.AccuracyRadius)}, true
}

// haversineKm is the great-circle distance between two points.
func haversineKm(a, b Location) float64 {
	const earthKm = 6371.0088
	rad := math.Pi / 180
	dLat := (b.Lat - a.Lat) * rad
	dLon := (b.Lon - a.Lon) * rad
	h := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(a.Lat*rad)*math.Cos(b.Lat*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * earthKm * math.Asin(math.Min(1, math.Sqrt(h)))
}
