package appattest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// ErrChallenge: the challenge is unknown, used, expired, or bound to
// another key.
var ErrChallenge = errors.New("attest: challenge not valid")

type challenges struct {
	store ChallengeStore
	ttl   time.Duration
	now   func() time.Time
	scope string // the namespace's prefix of store ids
}

// issue makes a 32-byte random challenge bound to binding.
func (c *challenges) issue(ctx context.Context, binding string) (string, time.Time, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", time.Time{}, err
	}
	ch := base64.RawURLEncoding.EncodeToString(b[:])
	exp := c.now().Add(c.ttl)
	if err := c.store.Put(ctx, c.scope+ch, binding, exp); err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %v", ErrStore, err)
	}
	return ch, exp, nil
}

// consume uses challenge once; binding must match the one it was issued
// for (an unbound challenge matches any).
func (c *challenges) consume(ctx context.Context, challenge, binding string) error {
	if challenge == "" || len(challenge) > 128 {
		return ErrChallenge
	}
	got, ok, err := c.store.Take(ctx, c.scope+challenge)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %v", ErrStore, err)
	case !ok:
		return ErrChallenge
	case got != "" && got != binding:
		return fmt.Errorf("%w: bound to another key", ErrChallenge)
	}
	return nil
}

// IssueChallenge returns a fresh single-use challenge bound to binding (a
// key ID for assertions, or "" for an attestation), and its expiry.
func (a *Verifier) IssueChallenge(ctx context.Context, binding string) (string, time.Time, error) {
	ctx, cancel := a.storeContext(ctx)
	defer cancel()
	return a.challeng.issue(ctx, binding)
}

// ConsumeChallenge uses challenge once; it returns [ErrChallenge] when it
// is unknown, used, expired or bound to another key.
func (a *Verifier) ConsumeChallenge(ctx context.Context, challenge, binding string) error {
	ctx, cancel := a.storeContext(ctx)
	defer cancel()
	return a.challeng.consume(ctx, challenge, binding)
}
