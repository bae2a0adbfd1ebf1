package depcheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/apiguard/apiguard"

// public lists the public packages and the heavy dependencies each may use.
var public = map[string][]string{
	"auth":      {"github.com/lestrrat-go/jwx", "github.com/hashicorp/golang-lru"},
	"signing":   {"github.com/hashicorp/golang-lru", "golang.org/x/crypto"},
	"ratelimit": {"golang.org/x/time", "github.com/hashicorp/golang-lru"},
	"attest":    {"github.com/hashicorp/golang-lru", "github.com/oschwald/maxminddb-golang"},
	// attest's vendor packages: each usable alone, none importing the
	// risk engine or another vendor; what they share is in attest/internal.
	"attest/appattest":     {"github.com/fxamacker/cbor", "github.com/hashicorp/golang-lru", "github.com/smallstep/pkcs7"},
	"attest/playintegrity": {"github.com/lestrrat-go/jwx"},
	"attest/appcheck":      {"github.com/lestrrat-go/jwx"},
	"attest/androidkey":    {}, // the standard library only
	"telemetry":            {"go.opentelemetry.io/otel"},
	"redisstore":           {"github.com/redis/go-redis"},
	"revoke":               {"github.com/lestrrat-go/jwx"},
	"servertls":            {"go.opentelemetry.io/otel", "github.com/lestrrat-go/jwx"},
}

// heavy are the dependencies a package may import only when listed above.
var heavy = []string{
	"github.com/lestrrat-go/jwx", "github.com/fxamacker/cbor", "github.com/redis/go-redis",
	"golang.org/x/time", "go.opentelemetry.io/otel", "github.com/oschwald/maxminddb-golang",
	"github.com/smallstep/pkcs7",
}

func TestPackagesStayIndependent(t *testing.T) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	checked := 0
	for pkg, allowed := range public {
		if _, err := os.Stat(filepath.Join(root, pkg)); err != nil {
			continue // not written yet
		}
		checked++
		t.Run(pkg, func(t *testing.T) {
			cmd := exec.Command("go", "list", "-deps", "./"+pkg)
			cmd.Dir = root
			out, err := cmd.Output()
			require.NoError(t, err)
			for _, dep := range strings.Fields(string(out)) {
				for other := range public {
					if dep == module+"/"+pkg || strings.Contains(dep, "/internal/") {
						break // itself, or shared implementation
					}
					// A package may sit under another (attest/appattest under
					// attest): it still imports neither its parent nor siblings.
					under := strings.HasPrefix(dep, module+"/"+other+"/") && !strings.HasPrefix(pkg, other+"/")
					if other != pkg && (dep == module+"/"+other || under) {
						t.Errorf("%s imports %s: public packages meet in the application, not in each other", pkg, dep)
					}
				}
				for _, h := range heavy {
					if strings.HasPrefix(dep, h) && !hasPrefixIn(h, allowed) {
						t.Errorf("%s pulls in %s, which only the packages that need it may import", pkg, dep)
					}
				}
			}
		})
	}
	require.Positive(t, checked, "no public package found")
}

func hasPrefixIn(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
