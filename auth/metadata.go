package auth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/apiguard/apiguard/internal/problem"
)

// ResourceMetadata holds the members of this API's protected resource
// metadata (RFC 9728 §2) that the rest of [Config] does not give.
type ResourceMetadata struct {
	// Scopes is scopes_supported: the scopes clients may ask for to call
	// this API. Default: none (the member is left out).
	Scopes []string
	// Name is resource_name, a human-readable name of the API. Default:
	// none.
	Name string
	// Documentation is resource_documentation, the URL of documentation
	// for developers (https, http only on loopback). Default: none.
	Documentation string
}

// wellKnownResource is the well-known URI suffix of RFC 9728 §3.
const wellKnownResource = "/.well-known/oauth-protected-resource"

// resourceMeta is the metadata document, built once by New; zero without
// Config.Resource.
type resourceMeta struct {
	url string // the document's URL, for resource_metadata in challenges
	doc []byte // the JSON document
}

// resourceDoc is the JSON shape of the document (RFC 9728 §2).
type resourceDoc struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name,omitempty"`
	ResourceDocumentation  string   `json:"resource_documentation,omitempty"`
	DPoPAlgs               []string `json:"dpop_signing_alg_values_supported,omitempty"`
	DPoPBoundRequired      bool     `json:"dpop_bound_access_tokens_required"`
}

// checkResource validates Config.Resource and Config.ResourceMetadata.
func (cfg *Config) checkResource() error {
	if cfg.Resource == "" {
		if cfg.ResourceMetadata.Name != "" || cfg.ResourceMetadata.Documentation != "" || cfg.ResourceMetadata.Scopes != nil {
			return fmt.Errorf("auth: Config.ResourceMetadata needs Config.Resource")
		}
		return nil
	}
	u, err := url.Parse(cfg.Resource)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || !secureScheme(u) {
		return fmt.Errorf("auth: Config.Resource %q must be an https URL (http only on loopback) without query or fragment (RFC 9728 §1.2)", cfg.Resource)
	}
	if d := cfg.ResourceMetadata.Documentation; d != "" {
		if u, err := url.Parse(d); err != nil || u.Host == "" || !secureScheme(u) {
			return fmt.Errorf("auth: Config.ResourceMetadata.Documentation %q must be an https URL (http only on loopback)", d)
		}
	}
	return nil
}

// newResourceMeta builds the document from cfg, validated.
func newResourceMeta(cfg *Config) resourceMeta {
	if cfg.Resource == "" {
		return resourceMeta{}
	}
	doc := resourceDoc{
		Resource:               cfg.Resource,
		AuthorizationServers:   make([]string, len(cfg.Issuers)),
		ScopesSupported:        cfg.ResourceMetadata.Scopes,
		BearerMethodsSupported: []string{"header"},
		ResourceName:           cfg.ResourceMetadata.Name,
		ResourceDocumentation:  cfg.ResourceMetadata.Documentation,
		DPoPBoundRequired:      cfg.DPoP == DPoPRequired,
	}
	for i, is := range cfg.Issuers {
		doc.AuthorizationServers[i] = is.Issuer
	}
	if cfg.DPoP != DPoPOff {
		for _, a := range cfg.DPoPAlgorithms {
			doc.DPoPAlgs = append(doc.DPoPAlgs, a.String())
		}
	}
	b, _ := json.Marshal(doc) // strings and bools only: cannot fail
	return resourceMeta{url: metadataURL(cfg.Resource), doc: b}
}

// metadataURL inserts the well-known suffix between the host and the
// path of resource, any terminating "/" removed (RFC 9728 §3.1).
func metadataURL(resource string) string {
	u, _ := url.Parse(resource) // checked by checkResource
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	return u.Scheme + "://" + u.Host + wellKnownResource + path
}

// MetadataURL returns the URL of this API's protected resource metadata
// (RFC 9728 §3.1): Config.Resource with /.well-known/oauth-protected-resource
// inserted between host and path ("https://api.example.com/v1" gives
// "https://api.example.com/.well-known/oauth-protected-resource/v1"). It
// is the resource_metadata of the WWW-Authenticate challenges. Empty
// without Config.Resource.
func (v *Verifier) MetadataURL() string { return v.resMeta.url }

// MetadataHandler returns the handler of the protected resource metadata
// (RFC 9728 §2, §3.2), to mount at the path of [Verifier.MetadataURL]:
//
//	u, _ := url.Parse(v.MetadataURL())
//	mux.Handle("GET "+u.Path, v.MetadataHandler())
//
// The document, fixed at [New], names resource (Config.Resource),
// authorization_servers (the issuers), scopes_supported and the optional
// members of Config.ResourceMetadata, bearer_methods_supported
// (["header"]), dpop_signing_alg_values_supported (Config.DPoPAlgorithms,
// when DPoP is on) and dpop_bound_access_tokens_required (Config.DPoP is
// DPoPRequired). It holds nothing secret: no key, no audience, no JWKS
// URL. GET and HEAD get it (cacheable for an hour); other methods 405. It
// panics without Config.Resource (a wiring error).
func (v *Verifier) MetadataHandler() http.Handler {
	if v.resMeta.url == "" {
		panic("auth: MetadataHandler needs Config.Resource")
	}
	doc := v.resMeta.doc
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			problem.Write(w, problem.Problem{Type: problem.TypeBase + "method-not-allowed", Title: "Method not allowed", Status: http.StatusMethodNotAllowed, Detail: "The metadata is read with GET."})
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age=3600")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(doc)
	})
}
