// Package problem writes RFC 9457 problem details (application/problem+json).
//
// Every apiguard package answers rejections through [Write]. The body holds
// only the fixed texts the caller passes in: nothing from the request is
// echoed, so a rejection can never reflect an attacker's input or leak a
// secret that arrived with the request.
package problem

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// ContentType is the media type of an RFC 9457 problem details body.
const ContentType = "application/problem+json"

// TypeBase prefixes the type URI of every problem apiguard defines. A URN
// needs no resolvable host, as RFC 9457 §3.1.1 allows.
const TypeBase = "urn:apiguard:problem:"

// Problem is one RFC 9457 problem details object.
type Problem struct {
	// Type is a URI naming the problem type. Default: "about:blank".
	Type string
	// Title is a short, fixed, human-readable summary of the type.
	Title string
	// Status is the HTTP status code. Default: 500 is never chosen here;
	// a zero Status is written as 400 so that a caller's slip cannot turn
	// a rejection into a server error.
	Status int
	// Detail is a fixed explanation for this occurrence. It must never
	// contain request input, tokens, keys or signatures.
	Detail string
	// Extensions are extra members (RFC 9457 §3.2), such as
	// "violated-policies". The standard members above win over an
	// extension of the same name.
	Extensions map[string]any
}

// Write sends p as the response: the status, Content-Type
// application/problem+json, Cache-Control: no-store and
// X-Content-Type-Options: nosniff, then the JSON body. Headers the caller
// set before (WWW-Authenticate, Retry-After, ...) are kept.
func Write(w http.ResponseWriter, p Problem) {
	if p.Status < 400 || p.Status > 599 {
		p.Status = http.StatusBadRequest
	}
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	body := Marshal(p)
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(p.Status)
	_, _ = w.Write(body)
}

// Marshal returns the JSON encoding of p with its members in a stable
// order (json.Marshal sorts map keys), ending in a newline.
func Marshal(p Problem) []byte {
	m := make(map[string]any, len(p.Extensions)+4)
	for k, v := range p.Extensions {
		m[k] = v
	}
	m["type"] = p.Type
	m["title"] = p.Title
	m["status"] = p.Status
	if p.Detail != "" {
		m["detail"] = p.Detail
	} else {
		delete(m, "detail")
	}
	b, err := json.Marshal(m)
	if err != nil {
		// An extension that cannot be encoded is a programming error in
		// apiguard; fall back to the standard members alone.
		b, _ = json.Marshal(map[string]any{"type": p.Type, "title": p.Title, "status": p.Status})
	}
	return append(b, '\n')
}

// WriteEncoded sends a body that [Marshal] encoded earlier, with the same
// headers as [Write]: for rejections whose body is fixed, so that an
// attacker's flood does not pay for (nor cost) an encoding per request.
func WriteEncoded(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
