package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/stretchr/testify/require"
)

// requireWalkthrough runs the walkthrough with args and checks each
// step's status, and that the revoked key was refused for being revoked
// (the answer, a plain 401, does not say; the log does) by both
// instances.
func requireWalkthrough(t *testing.T, store string, args ...string) {
	t.Helper()
	var out, log bytes.Buffer
	require.NoError(t, run(context.Background(), append([]string{"-v"}, args...), &out, &log), out.String())
	s := out.String()
	require.Contains(t, s, "device key store: "+store)
	for _, step := range []string{
		"1. enrol the Keystore key with its attestation chain at A      201 (expected 201) ok",
		"2. payment signed by the device key, at B                      200 (expected 200) ok",
		"3. revoke the device key (one call)                            done",
		"4. payment signed by the revoked key, at A                     401 (expected 401) ok",
		"5. payment signed by the revoked key, at B                     401 (expected 401) ok",
	} {
		require.Contains(t, s, step+"\n")
	}
	require.Contains(t, s, "every step as expected")
	require.Equal(t, 2, strings.Count(log.String(), `"reason":"revoked_key"`), log.String())
}

func TestDeviceKeysInMemory(t *testing.T) {
	requireWalkthrough(t, "in memory")
}

// With Redis, the instances share the store: the key enrolled at A
// verifies at B, and one revocation refuses it at both.
func TestDeviceKeysWithRedis(t *testing.T) {
	srv := redistest.Start(t)
	requireWalkthrough(t, "Redis "+srv.Addr(), "-redis", srv.Addr())
	keys, err := srv.Do("KEYS", "apiguard-devicekeys:dk:*")
	require.NoError(t, err)
	require.Equal(t, "*1", keys, "the device key was stored in Redis")
}

func TestDeviceKeysRedisDown(t *testing.T) {
	var out, log bytes.Buffer
	err := run(context.Background(), []string{"-redis", "127.0.0.1:1"}, &out, &log)
	require.ErrorContains(t, err, "redis 127.0.0.1:1")
}

func TestDeviceKeysRejectsBadFlag(t *testing.T) {
	var out, log bytes.Buffer
	require.Error(t, run(context.Background(), []string{"-nope"}, &out, &log))
}
