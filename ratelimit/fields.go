package ratelimit

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/apiguard/apiguard/internal/sfv"
)

// The RateLimit and RateLimit-Policy fields of
// draft-ietf-httpapi-ratelimit-headers (-10 to -12) are Structured Field
// Lists with one member per policy: the policy's name as an sf-string,
// with parameters (q and w in RateLimit-Policy, r and t in RateLimit).
// Every limiter a request passes adds its own member, so a response
// behind an address limiter and a user limiter carries both policies.

const (
	fieldPolicy = "Ratelimit-Policy" // canonical form of RateLimit-Policy
	fieldLimit  = "Ratelimit"        // canonical form of RateLimit
)

// quoteName returns name serialized as an sf-string (RFC 9651 §4.1.6),
// or an error naming field when name cannot be one: a policy name must be
// printable ASCII, so that a client's Structured Field parser accepts
// the whole field.
func quoteName(field, name string) (string, error) {
	b, err := sfv.AppendBareItem(nil, sfv.BareItem{Kind: sfv.String, Str: name})
	if err != nil {
		return "", fmt.Errorf("ratelimit: %s %q cannot name a policy in the RateLimit fields: use printable ASCII", field, name)
	}
	return string(b), nil
}

// policyField is the RateLimit-Policy member of a limit under the policy
// name quoted (an sf-string): quoted;q=quota;w=window in whole seconds.
func policyField(quoted string, lim Limit) string {
	return quoted + ";q=" + strconv.Itoa(lim.Requests) + ";w=" + strconv.FormatInt(ceilSeconds(lim.Per), 10)
}

// rateLimitField is a RateLimit member: quoted;r=remaining;t=seconds. A
// negative remaining is sent as 0: r is a non-negative Integer.
func rateLimitField(quoted string, remaining int, t int64) string {
	var buf [64]byte
	b := append(buf[:0], quoted...)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, int64(max(remaining, 0)), 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, t, 10)
	return string(b)
}

// addMember adds to the list field key of h the member val[0], the
// member of the policy called name: after the members already there, or
// in place of the member already named name (as an sf-string or a token),
// and only that one. Without a field already there, h takes val as it is
// (val may be shared: it is never modified). An existing field that does
// not parse as a List is replaced by val, as a client must ignore such a
// field whole (RFC 9651 §4.2).
//
// A field written by the limiters of a chain before this one (one line of
// members in this package's own form, none of them name's) takes the new
// member after a comma without being parsed: the answer of
// addMemberParsed, its plain twin, for a fraction of its cost (FuzzAddMember
// holds the two equal on every input).
func addMember(h http.Header, key, name string, val []string) {
	old := h[key]
	if len(old) == 0 {
		h[key] = val
		return
	}
	if len(old) == 1 && ownMembers(old[0], name) {
		h[key] = []string{old[0] + ", " + val[0]}
		return
	}
	addMemberParsed(h, key, name, val)
}

// ownMembers reports whether s is a list of members in the form this
// package writes, canonical as RFC 9651 serializes it, none named name:
// `"name";k=n;k=n` members (a name of printable ASCII without '"' or '\';
// lower-case keys, each once; non-negative Integers without leading
// zeros) joined by ", ".
func ownMembers(s, name string) bool {
	for {
		// "name"
		if len(s) < 2 || s[0] != '"' {
			return false
		}
		end := 1
		for end < len(s) && s[end] != '"' {
			if c := s[end]; c < 0x20 || c > 0x7e || c == '\\' {
				return false
			}
			end++
		}
		if end == len(s) || s[1:end] == name {
			return false
		}
		s = s[end+1:]
		// ;k=n parameters
		var keys [4]string
		n := 0
		for len(s) > 0 && s[0] == ';' {
			k := 1
			for k < len(s) && 'a' <= s[k] && s[k] <= 'z' {
				k++
			}
			if k == 1 || k == len(s) || s[k] != '=' || n == len(keys) {
				return false
			}
			key := s[1:k]
			for _, seen := range keys[:n] {
				if seen == key {
					return false
				}
			}
			keys[n] = key
			n++
			d := k + 1
			for d < len(s) && '0' <= s[d] && s[d] <= '9' {
				d++
			}
			if digits := d - k - 1; digits == 0 || digits > 15 || (digits > 1 && s[k+1] == '0') {
				return false
			}
			s = s[d:]
		}
		if s == "" {
			return true
		}
		if len(s) < 2 || s[0] != ',' || s[1] != ' ' {
			return false
		}
		s = s[2:]
	}
}

// addMemberParsed is addMember by the book: parse the field, keep every
// member but name's, add val[0].
func addMemberParsed(h http.Header, key, name string, val []string) {
	old := h[key]
	list, err := sfv.ParseList(old)
	if err != nil {
		h[key] = val
		return
	}
	b := make([]byte, 0, 32*(len(list)+1))
	n, replaced := 0, false
	add := func(member string) {
		if n > 0 {
			b = append(b, ", "...)
		}
		b = append(b, member...)
		n++
	}
	for _, m := range list {
		v := m.Item.Value
		if !m.IsInnerList && (v.Kind == sfv.String || v.Kind == sfv.Token) && v.Str == name {
			if !replaced {
				add(val[0])
				replaced = true
			}
			continue
		}
		raw := m.Raw
		if raw == "" {
			mb, err := sfv.AppendMember(nil, m)
			if err != nil {
				h[key] = val
				return
			}
			raw = string(mb)
		}
		add(raw)
	}
	if !replaced {
		add(val[0])
	}
	h[key] = []string{string(b)}
}

// quotedName returns the sf-string of policy: the rule's, or one made now
// for a policy this Limiter does not hold (a LimitError built elsewhere);
// "" when policy cannot be one.
func (l *Limiter) quotedName(policy string) (*rule, string) {
	for i := range l.rules {
		if l.rules[i].name == policy {
			return &l.rules[i], l.rules[i].quoted
		}
	}
	q, err := quoteName("", policy)
	if err != nil {
		return nil, ""
	}
	return nil, q
}

// setFields adds d's members to the RateLimit-Policy and RateLimit fields
// of h (see addMember), and with Config.LegacyHeaders sets the
// X-RateLimit fields, which hold one policy: the last limiter's.
func (l *Limiter) setFields(h http.Header, d Decision) {
	rl, quoted := l.quotedName(d.Policy)
	if quoted == "" {
		return
	}
	var policy []string
	if rl != nil && d.Limit == rl.limit {
		policy = rl.policy
	} else {
		policy = []string{policyField(quoted, d.Limit)}
	}
	addMember(h, fieldPolicy, d.Policy, policy)
	t := ceilSeconds(d.NextToken)
	if !d.Allowed {
		t = ceilSeconds(d.RetryAfter)
	}
	var limit []string
	if rl == &l.rules[0] && d.Remaining >= 0 && d.Remaining < fieldCacheR && t < fieldCacheT {
		slot := &l.fields[d.Remaining][t]
		v := slot.Load()
		if v == nil {
			v = &[]string{rateLimitField(quoted, d.Remaining, t)}
			slot.Store(v)
		}
		limit = *v
	} else {
		limit = []string{rateLimitField(quoted, d.Remaining, t)}
	}
	addMember(h, fieldLimit, d.Policy, limit)
	if l.cfg.LegacyHeaders {
		h.Set("X-RateLimit-Limit", strconv.Itoa(d.Limit.Requests))
		h.Set("X-RateLimit-Remaining", strconv.Itoa(max(d.Remaining, 0)))
		h.Set("X-RateLimit-Reset", strconv.FormatInt(t, 10))
	}
}
