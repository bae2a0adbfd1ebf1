package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDemoRunsClean(t *testing.T) {
	var out, errOut bytes.Buffer
	require.NoError(t, run(context.Background(), nil, &out, &errOut), out.String())
	s := out.String()
	for _, attack := range []string{"alg: none", "HS256 signed with the public key", "expired token replayed",
		"long-lived token", "token for another audience", "stolen DPoP token used without its key", "replayed DPoP proof",
		"replayed signed payment", "payment body tampered in flight", "payment signed with another key",
		"burst of 10 order reads", "credential stuffing"} {
		require.Contains(t, s, "attack: "+attack)
	}
	require.NotContains(t, s, " NO\n")
	m := regexp.MustCompile(`summary: (\d+) of (\d+) requests answered as expected; (\d+) of (\d+) attacks stopped`).FindStringSubmatch(s)
	require.NotNil(t, m, s)
	require.Equal(t, m[1], m[2])
	require.Equal(t, m[3], m[4])
}

func TestDemoReportsFailure(t *testing.T) {
	var out bytes.Buffer
	err := report(&out, []result{{name: "attack that got through", attack: true, expect: 401, status: 200}})
	require.ErrorContains(t, err, "1 of 1")
	require.True(t, strings.Contains(out.String(), "NO"))
	require.Contains(t, out.String(), "0 of 1 attacks stopped")
}

func TestDemoRejectsBadFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Error(t, run(context.Background(), []string{"-nope"}, &out, &errOut))
}
