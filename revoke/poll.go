package revoke

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/apiguard/apiguard/internal/events"
)

// pollRequest is an RFC 8936 §2.4 poll request.
type pollRequest struct {
	MaxEvents         int                 `json:"maxEvents"`
	ReturnImmediately bool                `json:"returnImmediately"`
	Ack               []string            `json:"ack"`
	SetErrs           map[string]setError `json:"setErrs,omitempty"`
}

type setError struct {
	Err         string `json:"err"`
	Description string `json:"description"`
}

// pollResponse is an RFC 8936 §2.5 poll response.
type pollResponse struct {
	Sets          map[string]string `json:"sets"`
	MoreAvailable bool              `json:"moreAvailable"`
}

// poll makes one RFC 8936 poll of pollURL: it acknowledges ack (the
// jti values of SETs handled by the previous poll) and reports errs,
// asks for up to PollMaxEvents SETs, and handles each with
// [Receiver.Receive]. It returns the jti values to acknowledge next (the
// SETs accepted, and replays of SETs accepted before), the errors to
// report next (the SETs refused), and whether more are available. SETs
// not handled now ([ErrSETUnavailable]) are neither: the transmitter
// delivers them again. With wait, the transmitter may hold the request
// until it has events (long polling).
func (r *Receiver) poll(ctx context.Context, pollURL string, ack []string, errs map[string]setError, wait bool) (nextAck []string, nextErrs map[string]setError, more bool, err error) {
	if ack == nil {
		ack = []string{}
	}
	body, err := json.Marshal(pollRequest{MaxEvents: r.cfg.PollMaxEvents, ReturnImmediately: !wait, Ack: ack, SetErrs: errs})
	if err != nil {
		return nil, nil, false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, pollURL, bytes.NewReader(body))
	if err != nil {
		return nil, nil, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if r.cfg.PollAuthorization != "" {
		req.Header.Set("Authorization", r.cfg.PollAuthorization)
	}
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, nil, false, fmt.Errorf("revoke: poll: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, false, fmt.Errorf("revoke: poll: status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, r.cfg.MaxBodySize*int64(max(r.cfg.PollMaxEvents, 1))+1))
	if err != nil {
		return nil, nil, false, fmt.Errorf("revoke: poll: %w", err)
	}
	var pr pollResponse
	if err := json.Unmarshal(b, &pr); err != nil {
		return nil, nil, false, fmt.Errorf("revoke: poll: response: %w", err)
	}
	if len(pr.Sets) > r.cfg.PollMaxEvents {
		return nil, nil, false, fmt.Errorf("revoke: poll: %d SETs, over maxEvents %d", len(pr.Sets), r.cfg.PollMaxEvents)
	}
	nextAck = []string{}
	for jti, set := range pr.Sets {
		err := r.Receive(ctx, []byte(set))
		code, desc, final := setCode(err)
		switch {
		case err == nil, errors.Is(err, ErrSETReplay):
			// A replay here is a redelivery of a SET accepted before (the
			// ack was lost): acknowledge it again.
			nextAck = append(nextAck, jti)
		case final:
			if nextErrs == nil {
				nextErrs = map[string]setError{}
			}
			nextErrs[jti] = setError{Err: code, Description: desc}
		}
	}
	return nextAck, nextErrs, pr.MoreAvailable, nil
}

// pollLoop polls until Close: at once again while more SETs are
// available or some were handled, else with long polling, no sooner than
// PollInterval after the start of the last poll; after a failed poll it
// waits from 1s, doubling up to 1 minute.
func (r *Receiver) pollLoop() {
	defer r.wg.Done()
	var ack []string
	var errs map[string]setError
	wait, backoff := false, time.Second
	sleep := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-r.ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for r.ctx.Err() == nil {
		start := time.Now()
		nextAck, nextErrs, more, err := r.poll(r.ctx, r.cfg.PollURL, ack, errs, wait)
		if err != nil {
			if r.ctx.Err() != nil {
				return
			}
			events.Log(r.ctx, r.cfg.Logger, slog.LevelWarn, "revoke: poll failed",
				slog.String("event", "set_poll_error"), slog.String("reason", "transmitter_unavailable"), slog.String("error", err.Error()))
			if !sleep(backoff) {
				return
			}
			backoff = min(2*backoff, time.Minute)
			continue // ack and errs are sent again
		}
		backoff = time.Second
		got := len(nextAck) + len(nextErrs)
		ack, errs = nextAck, nextErrs
		// Long-poll only when nothing is waiting to be acknowledged.
		wait = !more && got == 0
		// A transmitter that answers at once with nothing (no long
		// polling) is asked again after PollInterval, not in a busy loop.
		if wait {
			if d := r.cfg.PollInterval - time.Since(start); d > 0 && !sleep(d) {
				return
			}
		}
	}
}
