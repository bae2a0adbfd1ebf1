package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDemoRunsClean(t *testing.T) {
	var out, errOut bytes.Buffer
	require.NoError(t, run(context.Background(), nil, &out, &errOut), out.String())
	require.Contains(t, out.String(), "attack: header injection in X-Request-ID")
	require.NotContains(t, out.String(), " NO\n")
	require.Regexp(t, `summary: (\d+) of (\d+) requests answered as expected`, out.String())
	require.NotContains(t, out.String(), "NO\n")
}

func TestDemoReportsFailure(t *testing.T) {
	var out bytes.Buffer
	err := report(&out, []result{{name: "attack that got through", expect: 401, status: 200}})
	require.ErrorContains(t, err, "1 of 1")
	require.True(t, strings.Contains(out.String(), "NO"))
}

func TestDemoRejectsBadFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Error(t, run(context.Background(), []string{"-nope"}, &out, &errOut))
}
